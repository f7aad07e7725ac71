"""Run Deckhand as its own ServiceAccount, the way the README's install does.

:func:`install` applies what ``deckhand rbac`` prints for a configuration (with the built
kubectl, as the admin) and writes a kubeconfig with ``deckhand kubeconfig`` (a TokenRequest
token); both through the installed console script. :func:`uninstall` removes the cluster-wide
objects and the ServiceAccount's namespace; the managed namespaces are the test's to delete.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster.cluster import Cluster


def console_script() -> str:
    script = shutil.which("deckhand", path=str(Path(sys.executable).parent))
    assert script is not None, "the deckhand console script is not installed"
    return script


@dataclass(frozen=True)
class Installed:
    kubeconfig: Path
    """Authenticates as the ServiceAccount (a bearer token, nothing of the admin's)."""
    namespace: str
    """The ServiceAccount's namespace."""
    objects: list[dict[str, object]]
    """What ``deckhand rbac`` printed and was applied."""


def install(cluster: Cluster, config: Path, workdir: Path, namespace: str,
            service_account: str = "deckhand") -> Installed:
    rbac = subprocess.run([console_script(), "rbac", "--config", str(config),
                           "--namespace", namespace, "--service-account", service_account],
                          capture_output=True, text=True, check=True, timeout=60)
    (workdir / "rbac.yaml").write_text(rbac.stdout)
    cluster.kubectl("apply", "-f", str(workdir / "rbac.yaml"))
    kubeconfig = workdir / "deckhand-sa.kubeconfig"
    made = subprocess.run([console_script(), "kubeconfig", "-o", str(kubeconfig),
                           "--namespace", namespace, "--service-account", service_account,
                           "--duration", "2h", "--admin-kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return Installed(kubeconfig, namespace, list(yaml.safe_load_all(rbac.stdout)))


def uninstall(cluster: Cluster, installed: Installed) -> None:
    for obj in installed.objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            name = obj["metadata"]["name"]  # type: ignore[index]
            cluster.kubectl("delete", str(obj["kind"]).lower(), str(name),
                            "--ignore-not-found", "--wait=false")
    cluster.kubectl("delete", "namespace", installed.namespace, "--ignore-not-found",
                    "--wait=false")
