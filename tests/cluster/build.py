"""Build the test world's Go tools from the Go module proxy, and reuse them while nothing changed.

Each folder below ``tests/cluster/go/`` is a tiny Go module whose go.mod/go.sum pin one tool set
(Kubernetes 1.36 with its staging modules, etcd 3.6, KWOK, sops + age). ``go build`` writes the
binaries into the git-ignored cache folder (``.cache/bin`` at the repository root, or
``$DECKHAND_CACHE/bin``). A stamp file per module records a hash of what the build depends on
(go.mod, go.sum, the ldflags and the Go version); a module is rebuilt only when its stamp differs
or one of its binaries is missing, so a warm run costs a few file reads.

Alertmanager is the one tool that comes from Debian (``prometheus-alertmanager``): the package
ships the default notification template the binary needs at run time.

This module never downloads anything itself: ``go`` fetches modules through the proxy it is
configured with. A missing tool chain or a failed build raises :class:`BuildError` with the
command and its output, so a test run fails loudly instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_MODULES = Path(__file__).resolve().parent / "go"

K8S_VERSION = "v1.36.3"


def cache_dir() -> Path:
    """The git-ignored folder for built binaries (``$DECKHAND_CACHE`` overrides it)."""
    return Path(os.environ.get("DECKHAND_CACHE", REPO_ROOT / ".cache")).resolve()


def bin_dir() -> Path:
    return cache_dir() / "bin"


class BuildError(RuntimeError):
    """A tool could not be built or found; the message says which and why."""


@dataclass(frozen=True)
class GoModule:
    """One wrapper module and the main packages it builds (binary name = last path element)."""

    folder: str
    packages: tuple[str, ...]
    ldflags: str = "-s -w"

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(p.rstrip("/").split("/")[-1] for p in self.packages)


_K8S_LDFLAGS = " ".join(
    [
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={K8S_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=36",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        # kubectl reports its own version through client-go's copy of the same variables.
        f"-X k8s.io/client-go/pkg/version.gitVersion={K8S_VERSION}",
        "-X k8s.io/client-go/pkg/version.gitMajor=1",
        "-X k8s.io/client-go/pkg/version.gitMinor=36",
    ]
)

MODULES: tuple[GoModule, ...] = (
    GoModule(
        "k8s",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
        ),
        _K8S_LDFLAGS,
    ),
    GoModule("etcd", ("go.etcd.io/etcd/server/v3",)),
    GoModule("kwok", ("sigs.k8s.io/kwok/cmd/kwok",)),
    GoModule(
        "sops",
        (
            "github.com/getsops/sops/v3/cmd/sops",
            "filippo.io/age/cmd/age",
            "filippo.io/age/cmd/age-keygen",
        ),
    ),
)

# etcd's main package is ``go.etcd.io/etcd/server/v3``; its binary is called etcd, not v3.
_RENAMES = {"v3": "etcd"}

DEBIAN_TOOLS = {"prometheus-alertmanager": "prometheus-alertmanager"}


def binary_name(package: str) -> str:
    last = package.rstrip("/").split("/")[-1]
    return _RENAMES.get(last, last)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go tool chain (go) is not on PATH; install Go 1.26 or newer")
    return go


def _stamp(module: GoModule, go_version: str) -> str:
    h = hashlib.sha256()
    folder = GO_MODULES / module.folder
    for name in ("go.mod", "go.sum"):
        h.update((folder / name).read_bytes())
    h.update(module.ldflags.encode())
    h.update(" ".join(module.packages).encode())
    h.update(go_version.encode())
    return h.hexdigest()


def _build_module(module: GoModule, go: str, go_version: str, log: bool) -> float | None:
    """Build one module if its stamp is stale; return the seconds spent, or None if it was fresh."""
    out = bin_dir()
    stamp_file = out / f".{module.folder}.stamp"
    want = _stamp(module, go_version)
    have_all = all((out / binary_name(p)).is_file() for p in module.packages)
    if have_all and stamp_file.is_file() and stamp_file.read_text() == want:
        return None
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    started = time.monotonic()
    for package in module.packages:
        # One `go build` per package keeps the binary name under our control (etcd's main package
        # is called v3); the compile cache makes the second and later packages link-only.
        cmd = [go, "build", "-trimpath", "-ldflags", module.ldflags,
               "-o", str(out / binary_name(package)), package]
        if log:
            print(f"[build] {module.folder}: {binary_name(package)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=GO_MODULES / module.folder, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                f"building {package} failed (exit {proc.returncode}) in tests/cluster/go/"
                f"{module.folder}:\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
            )
    stamp_file.write_text(want)
    return time.monotonic() - started


def ensure_built(log: bool = True) -> dict[str, Path]:
    """Build every stale Go module and check the Debian tools; return binary name -> path."""
    go = _go()
    go_version = subprocess.run([go, "version"], capture_output=True, text=True,
                                check=True).stdout.strip()
    for module in MODULES:
        spent = _build_module(module, go, go_version, log)
        if spent is not None and log:
            print(f"[build] {module.folder} built in {spent:.0f} s", file=sys.stderr, flush=True)
    paths = {binary_name(p): bin_dir() / binary_name(p) for m in MODULES for p in m.packages}
    for name, package in DEBIAN_TOOLS.items():
        found = shutil.which(name)
        if found is None:
            raise BuildError(f"{name} is not installed; install the Debian package {package} "
                             "(the README's test command does)")
        paths[name] = Path(found)
    return paths


def tool(name: str) -> Path:
    """The path of one built tool; fails loudly when it was never built."""
    if name in DEBIAN_TOOLS:
        found = shutil.which(name)
        if found is None:
            raise BuildError(f"{name} is not installed (Debian package {DEBIAN_TOOLS[name]})")
        return Path(found)
    path = bin_dir() / name
    if not path.is_file():
        raise BuildError(f"{path} is missing; run `python -m tests.cluster build` first")
    return path
