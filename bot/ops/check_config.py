"""``deckhand check-config [FILE]``: validate a configuration file and say what it means.

This module owns the report only. Validation is :func:`deckhand.bot.config.load_config`'s (so start-up and
this command always agree) and the reading of roles and bindings is :class:`deckhand.bot.access.policy.Policy`'s.
It never talks to Slack or Kubernetes: user groups are shown by ID, not resolved. Given a
kubeconfig, it reads it (no connection) and refuses one that lacks a configured context, as
``deckhand run`` does at start.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TextIO

from deckhand.bot.access.policy import Policy, StaticGroupDirectory
from deckhand.bot.config import DeckhandConfig, Environment, load_config
from deckhand.bot.errors import ConfigError
from deckhand.bot.kube.client import KubeSource, kubeconfig_problem

EXIT_OK = 0
EXIT_INVALID = 2


def check_config_main(path: Path, out: TextIO, kube: KubeSource | None = None) -> int:
    """Load ``path``, print what it configures (or why it is invalid) to ``out``.

    Args:
        path: the configuration file.
        out: where the report goes (stdout for the command).
        kube: the kubeconfig ``deckhand run`` would use; None: not checked (in the cluster,
            the pod's service account is all there is).

    Returns:
        0 if the file is valid (warnings included), 2 if it cannot be read or is invalid.
    """
    try:
        config = load_config(path)
    except ConfigError as e:
        print(e, file=out)
        return EXIT_INVALID
    problem = kubeconfig_problem(kube, config.contexts()) if kube is not None else None
    if problem:
        print(problem, file=out)
        return EXIT_INVALID
    policy = Policy(config, StaticGroupDirectory())
    warnings = _manifest_warnings(config) + _secret_warnings(config) + policy.warnings()
    sections = [
        f"{path}: valid",
        f"Slack workspace: {config.slack.team_id} (requests from any other are refused)",
        _environments(config),
        _workloads(config),
        *([_secrets(config)] if config.secrets else []),
        policy.describe(),
    ]
    if warnings:
        sections.append("\n".join(["Warnings:", *(f"  - {w}" for w in warnings)]))
    print("\n\n".join(sections), file=out)
    return EXIT_OK


def _environments(config: DeckhandConfig) -> str:
    lines = [f"Environments ({len(config.environments)}):"]
    for name, env in config.environments.items():
        lines += [
            f"  {name}",
            f"    namespace:  {env.namespace}",
            f"    context:    {env.context or '(the current kubeconfig context)'}",
            f"    approvals:  {_approvals(env)}",
            f"    lifetime:   requests expire after {format_duration(env.approval.lifetime)}",
        ]
    return "\n".join(lines)


def _approvals(env: Environment) -> str:
    approval = env.approval
    roles = " or ".join(approval.approver_roles)
    if approval.approvers == 0:
        return "none; the requester's Confirm is enough"
    if approval.approvers == 1:
        return f"1 approval from another person with role {roles}"
    return f"{approval.approvers} approvals from other people with role {roles}"


def _workloads(config: DeckhandConfig) -> str:
    lines = [f"Workloads ({len(config.workloads)}):"]
    for name, w in config.workloads.items():
        namespaces = ", ".join(f"{env} -> {config.namespace_of(name, env)}"
                               for env in w.environments)
        folder = config.manifests_dir(name)
        lines += [
            f"  {name}",
            f"    deployment: {config.deployment_of(name)} (container {w.container}), "
            f"configmap {config.configmap_of(name)}",
            f"    namespaces: {namespaces}",
            f"    default environment: {w.default_environment or '(none; commands must name one)'}",
            f"    replicas:   {w.replicas.min} to {w.replicas.max}",
            f"    manifests:  {folder} ({'exists' if folder.is_dir() else 'MISSING'})",
        ]
    return "\n".join(lines)


def _manifest_warnings(config: DeckhandConfig) -> list[str]:
    return [f"workloads.{name}.manifests: {config.manifests_dir(name)} is not a folder"
            for name in config.workloads if not config.manifests_dir(name).is_dir()]


def _secrets(config: DeckhandConfig) -> str:
    lines = [f"Secrets ({len(config.secrets)}, SOPS-encrypted; /secrets):"]
    for name, spec in config.secrets.items():
        restart = ", ".join(spec.restart) or "nothing"
        lines += [f"  {name}",
                  f"    workload:   {spec.workload} (its RBAC and approvals apply); "
                  f"restarts {restart} after a change"]
        for env in spec.files:
            file = config.secret_file(name, env)
            lines.append(f"    {env}: Secret {config.namespace_of(spec.workload, env)}/"
                         f"{spec.secret or name} from {file} "
                         f"({'exists' if file.is_file() else 'MISSING'})")
    return "\n".join(lines)


def _secret_warnings(config: DeckhandConfig) -> list[str]:
    found = []
    for name, spec in config.secrets.items():
        for env in spec.files:
            file = config.secret_file(name, env)
            if not file.is_file():
                found.append(f"secrets.{name}.files.{env}: {file} does not exist")
        missing = [e for e in config.workloads[spec.workload].environments
                   if e not in spec.files]
        if missing:
            found.append(f"secrets.{name}: no file for {', '.join(missing)}, where "
                         f"{spec.workload} runs; /secrets cannot set it up there")
    return found


def format_duration(value: timedelta) -> str:
    """Write a duration the way the configuration file does: ``90s``, ``30m``, ``1h30m``.

    Args:
        value: a non-negative duration; fractions of a second are dropped.

    Returns:
        The shortest ``XhYmZs`` spelling, ``0s`` for zero.
    """
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"))
                   if n)
    return text or "0s"
