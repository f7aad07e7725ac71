"""/secrets: SOPS-encrypted Secrets, shown, compared and applied from Slack by key name only.

One command, three sub-commands: ``status`` and ``diff`` only answer (read-only, no gate);
``apply`` is a change and goes through Confirm and the environment's approvals like /deploy.
:meth:`Secrets.mutates` tells the pipeline which is which from the parsed arguments.

Nothing a user sees, nothing stored in the request row and nothing logged holds a value: the
plan keeps the encrypted file's SHA-256, its recipients and the key names, and the execution
decrypts the file again, refusing as stale if its SHA-256 is no longer the planned one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import ClusterError, SecretError, StaleError, UsageError
from deckhand.bot.plans import Deps, Outcome, Plan, Target, View
from deckhand.bot.secrets.sops import SecretFile, Sops
from deckhand.commands.base import Command, split_args
from deckhand.commands.restart import restart_patch

Action = Literal["status", "diff", "apply"]


class SecretsArgs(BaseModel):
    action: Action
    items: list[tuple[str, str]]
    """(secret, environment) pairs, checked against the configuration."""
    targets: list[tuple[str, str]]
    """(workload, environment) pairs the RBAC policy judges: each secret's workload."""


@dataclass(frozen=True)
class KeyDiff:
    """Key names only: which keys an apply adds, removes, changes or leaves as they are."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        parts = [("added", self.added), ("removed", self.removed), ("changed", self.changed),
                 ("unchanged", self.unchanged)]
        return [f"{label}: {', '.join(keys)}" for label, keys in parts if keys]


def compare(desired: Mapping[str, bytes], live: Mapping[str, bytes]) -> KeyDiff:
    """Compare two sets of values by each key's SHA-256; the result holds names only."""

    def digest(v: bytes) -> bytes:
        return hashlib.sha256(v).digest()

    both = sorted(set(desired) & set(live))
    return KeyDiff(
        added=tuple(sorted(set(desired) - set(live))),
        removed=tuple(sorted(set(live) - set(desired))),
        changed=tuple(k for k in both if digest(desired[k]) != digest(live[k])),
        unchanged=tuple(k for k in both if digest(desired[k]) == digest(live[k])))


def values_of(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """A Secret object's values, decoded from ``data`` (empty for an absent Secret)."""
    out: dict[str, bytes] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "")
        except (binascii.Error, ValueError):
            out[key] = b""  # never equal to a real value's digest; shows as changed
    return out


@dataclass(frozen=True)
class _Where:
    secret: str
    environment: str
    workload: str
    namespace: str
    name: str
    context: str | None
    label: str


def _where(config: DeckhandConfig, secret: str, environment: str) -> _Where:
    spec = config.secrets[secret]
    return _Where(secret=secret, environment=environment, workload=spec.workload,
                  namespace=config.namespace_of(spec.workload, environment),
                  name=spec.secret or secret,
                  context=config.environments[environment].context,
                  label=str(spec.files[environment]))


def _sops(deps: Deps) -> Sops:
    if deps.sops is None:
        raise SecretError("sops is not set up for this bot (DECKHAND_SOPS_BINARY, "
                          "DECKHAND_AGE_KEY_FILE)")
    return deps.sops


def _decrypt(deps: Deps, w: _Where) -> SecretFile:
    return _sops(deps).decrypt_secret(deps.config.secret_file(w.secret, w.environment),
                                      w.label, w.name, w.namespace)


def _file_line(w: _Where, f: SecretFile) -> str:
    when = f.metadata.last_modified or "an unknown time"
    to = ", ".join(f"`{r}`" for r in f.metadata.recipients) or "no age recipients"
    return f"file `{w.label}`, encrypted {when} for {to}"


def _metadata_line(deps: Deps, w: _Where) -> list[str]:
    try:
        _, meta = _sops(deps).metadata(deps.config.secret_file(w.secret, w.environment), w.label)
    except SecretError:
        return []
    to = ", ".join(f"`{r}`" for r in meta.recipients) or "no age recipients"
    return [f"file `{w.label}`, encrypted {meta.last_modified or 'at an unknown time'} for {to}"]


class Secrets(Command):
    """/secrets status [name] [env] | diff <name> <env> | apply <name> <env>

    SOPS-encrypted Secrets from the configured files; values are never shown, only key names.
    status (read-only): each file, its recipients and when it was encrypted, and whether the
    cluster's Secret is in sync, drifted or missing. diff (read-only): decrypt, validate, dry-run
    and list the keys added, removed, changed and unchanged. apply: the same diff as a plan,
    through Confirm and approvals; applied with field manager deckhand, then the configured
    workloads restart. Example: /secrets diff cardano-secrets production
    """

    name = "secrets"

    def mutates(self, args: Any) -> bool:
        return isinstance(args, SecretsArgs) and args.action == "apply"

    def parse(self, text: str, config: DeckhandConfig) -> SecretsArgs:
        words, _ = split_args(text, Secrets, set(), 1, 3)
        action, rest = words[0], words[1:]
        if action not in ("status", "diff", "apply"):
            raise UsageError(f"unknown sub-command {action!r} (status, diff or apply)",
                             self.usage())
        if action != "status" and len(rest) != 2:
            raise UsageError(f"/secrets {action} needs a secret and an environment",
                             self.usage())
        if not config.secrets:
            raise UsageError("no secrets are configured (the configuration's secrets section)")
        if not rest:
            items = [(s, e) for s, spec in sorted(config.secrets.items()) for e in spec.files]
        else:
            secret = rest[0]
            if secret not in config.secrets:
                known = ", ".join(sorted(config.secrets))
                raise UsageError(f"unknown secret {secret!r} (known: {known})", self.usage())
            files = config.secrets[secret].files
            if len(rest) == 1:
                items = [(secret, e) for e in files]
            elif rest[1] not in files:
                raise UsageError(f"{secret} has no file for {rest[1]!r} (it has: "
                                 f"{', '.join(files)})", self.usage())
            else:
                items = [(secret, rest[1])]
        targets = list(dict.fromkeys((config.secrets[s].workload, e) for s, e in items))
        return SecretsArgs(action=cast(Action, action), items=items, targets=targets)

    # -- read-only: status and diff ------------------------------------------------------------

    def read(self, deps: Deps, args: SecretsArgs) -> View:
        if args.action == "diff":
            secret, environment = args.items[0]
            w = _where(deps.config, secret, environment)
            f = _decrypt(deps, w)
            diff = self._dry_run(deps, w, f, deps.kube.get_secret(w.namespace, w.name,
                                                                  w.context))
            lines = [_file_line(w, f), *diff.lines()]
            return View(title=f"Diff of {secret} in {environment} ({w.namespace}/{w.name})",
                        lines=lines)
        lines = []
        for secret, environment in args.items:
            lines += self._status(deps, _where(deps.config, secret, environment))
        return View(title="Secrets", lines=lines)

    def _status(self, deps: Deps, w: _Where) -> list[str]:
        head = f"*{w.secret}* in *{w.environment}* ({w.namespace}/{w.name})"
        try:
            f = _decrypt(deps, w)
        except SecretError as e:
            # One unreadable file must not hide the others; its reason is safe to show, and
            # its metadata, readable without the key, says whom it was encrypted for.
            return [f"{head}: cannot be checked: {e}", *_metadata_line(deps, w)]
        try:
            live = deps.kube.get_secret(w.namespace, w.name, w.context)
        except ClusterError as e:
            return [f"{head}: {e}", _file_line(w, f)]
        if live is None:
            return [f"{head}: *missing* in the cluster (keys in the file: "
                    f"{', '.join(sorted(f.values))})", _file_line(w, f)]
        diff = compare(f.values, values_of(live))
        if diff.in_sync:
            verdict = f"*in sync* ({len(diff.unchanged)} key(s))"
        else:
            parts = [("changed", diff.changed), ("only in the cluster", diff.removed),
                     ("only in the file", diff.added)]
            verdict = "*drifted*: " + "; ".join(f"{label}: {', '.join(keys)}"
                                                for label, keys in parts if keys)
        return [f"{head}: {verdict}", _file_line(w, f)]

    def _dry_run(self, deps: Deps, w: _Where, f: SecretFile,
                 live: dict[str, Any] | None) -> KeyDiff:
        """Validate the Secret with a server-side dry run, then compare the file's values with
        the live ones. Keys only in the cluster are "removed": the apply removes them too, even
        when another manager set them, so the Secret ends up holding exactly the file."""
        deps.kube.apply(f.manifest(), dry_run=True, context=w.context)
        return compare(f.values, values_of(live))

    # -- apply ---------------------------------------------------------------------------------

    def plan(self, deps: Deps, args: SecretsArgs) -> Plan:
        secret, environment = args.items[0]
        w = _where(deps.config, secret, environment)
        f = _decrypt(deps, w)
        live = deps.kube.get_secret(w.namespace, w.name, w.context)
        diff = self._dry_run(deps, w, f, live)
        spec = deps.config.secrets[secret]
        summary = [f"Apply Secret {w.namespace}/{w.name} from {_file_line(w, f)}"]
        # Restart only what runs here, and only when the values change.
        restart: list[tuple[str, str, int | None]] = []  # namespace, Deployment, generation
        for wl in [] if diff.in_sync else spec.restart:
            if environment not in deps.config.workloads[wl].environments:
                continue
            namespace = deps.config.namespace_of(wl, environment)
            name = deps.config.deployment_of(wl)
            d = deps.kube.get_deployment(namespace, name, w.context)
            if d is None:
                summary.append(f"{wl} is not deployed in {environment}: nothing to restart.")
            else:
                restart.append((namespace, name, d["metadata"].get("generation")))
        # The executor follows one Deployment, plan.target, in plan.namespace. Several restarts
        # are all started and the request ends there: following only one of them would report
        # its verdict as if it were everyone's.
        follow = len(restart) == 1 and restart[0][0] == w.namespace
        if restart:
            summary.append(f"Then restart {', '.join(n for _, n, _ in restart)} (rolling, as "
                           f"/restart does)" + (", followed live." if follow else
                                                "; started, not followed (see /status)."))
        version = (live or {}).get("metadata", {}).get("resourceVersion")
        if follow:
            target = Target(namespace=w.namespace, name=restart[0][1], generation=restart[0][2])
        else:
            target = Target(kind="Secret", namespace=w.namespace, name=w.name,
                            resource_version=version)
        return Plan(verb=self.name, workload=w.workload, environment=environment,
                    namespace=w.namespace, context=w.context, summary=summary,
                    changes=diff.lines(), target=target,
                    follow=follow,
                    steps={"secret": secret, "file": w.label, "sha256": f.sha256,
                           "recipients": list(f.metadata.recipients),
                           "keys": sorted(f.values), "secret_version": version,
                           "restart": [[ns, name] for ns, name, _ in restart]})

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        steps = plan.steps
        w = _where(deps.config, steps["secret"], plan.environment)
        f = _decrypt(deps, w)
        if f.sha256 != steps["sha256"]:
            raise StaleError(f"{w.label} changed since this was planned (SHA-256 "
                             f"{steps['sha256'][:12]}…, now {f.sha256[:12]}…); nothing was "
                             f"done. Run /secrets apply again for a fresh plan.")
        live = deps.kube.get_secret(w.namespace, w.name, w.context)
        version = (live or {}).get("metadata", {}).get("resourceVersion")
        if version != steps["secret_version"]:
            raise StaleError(f"Secret {w.namespace}/{w.name} changed in the cluster since this "
                             f"was planned; nothing was done. Run /secrets apply again.")
        applied = deps.kube.apply(f.manifest(), dry_run=False, context=w.context)
        others = sorted(set(applied.get("data") or {}) - set(f.values))
        if others:
            deps.kube.remove_secret_keys(w.namespace, w.name, others,
                                         applied["metadata"]["resourceVersion"], w.context)
        message = (f"applied Secret {w.namespace}/{w.name} from {w.label} (sha256 {f.sha256}; "
                   f"recipients {', '.join(f.metadata.recipients) or 'none'}; keys "
                   f"{', '.join(sorted(f.values))})")
        restarted: list[str] = []
        for namespace, name in steps["restart"]:
            try:
                deps.kube.patch_deployment(namespace, name, restart_patch(datetime.now(UTC)),
                                           context=w.context)
            except ClusterError as e:
                # The Secret is applied: say so, or the operator would apply it again.
                done = f"; restarted {', '.join(restarted)}" if restarted else ""
                raise ClusterError(f"{message}{done}; but the restart of {name} failed: {e}. "
                                   f"Run /restart for it.") from e
            restarted.append(name)
        if restarted:
            message += f"; restart started: {', '.join(restarted)}"
        return Outcome(ok=True, message=message)
