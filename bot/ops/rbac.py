"""``deckhand rbac``: the Kubernetes RBAC the configuration needs, and nothing more.

Every capability of the bot has its own function below that returns exactly the rules it needs,
with the reason next to each; a new capability adds a function, not a wider rule. The rules of
the namespaced capabilities go into one Role (and RoleBinding) per managed namespace; the
cluster-scoped ones (the Namespace objects /deploy applies, nodes and volumes the cache watches)
into one ClusterRole. Nothing is granted in a namespace the configuration does not name, so
kube-system and the Secrets of other applications stay out of reach.

The output also contains the managed Namespaces: a Role can only live in an existing namespace,
so whoever applies the RBAC creates them, and the bot never needs the right to create
namespaces (which Kubernetes cannot limit by name). /deploy still applies the Namespace object
of its manifests (labels such as Pod Security), which needs get and patch on those names only.

Authorization of a server-side dry run equals that of the real call: /deploy's plan dry-runs a
pod create for admission, so ``create`` on pods is granted in managed namespaces (nothing else
the bot does creates pods; the Deployment controller does that with its own account).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.errors import ConfigError
from deckhand.bot.manifests.render import APPLY_ORDER, CLUSTER_SCOPED

SERVICE_ACCOUNT = "deckhand"
SERVICE_ACCOUNT_NAMESPACE = "deckhand"
NAME = "deckhand"

#: API group and resource of every kind /deploy may apply (bot/manifests/render.py refuses the rest).
KIND_RESOURCES: dict[str, tuple[str, str]] = {
    "Namespace": ("", "namespaces"),
    "ConfigMap": ("", "configmaps"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Service": ("", "services"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Deployment": ("apps", "deployments"),
}


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: ``verbs`` on ``resources`` of ``group`` (optionally only these names)."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    names: tuple[str, ...] = ()
    why: str = field(default="", compare=False)


# -- namespaced capabilities (one Role per managed namespace) ---------------------------------


def status_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """/status and /history read the Deployment, its ReplicaSets (revisions), pods and claims."""
    return [
        Rule("apps", ("deployments",), ("get", "list"), why="/status, /history: the rollout"),
        Rule("apps", ("replicasets",), ("list",), why="/history, /rollback: the revisions"),
        Rule("", ("pods",), ("list",), why="/status: pods, nodes, restarts"),
        Rule("", ("persistentvolumeclaims",), ("list",), why="/status: volume claims"),
    ]


def follow_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """Rollouts are followed on one list+watch of Deployments per namespace."""
    return [Rule("apps", ("deployments",), ("list", "watch"), why="following rollouts")]


def deploy_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """/deploy server-side applies the workload's objects (create when new, patch otherwise),
    reads each one for the plan, and dry-runs one pod create for admission."""
    rules = [Rule(group, (resource,), ("get", "create", "patch"), why=f"/deploy applies {kind}")
             for kind in APPLY_ORDER if kind not in CLUSTER_SCOPED
             for group, resource in [KIND_RESOURCES[kind]]]
    rules.append(Rule("", ("pods",), ("create",),
                      why="/deploy's plan: a dry-run pod create (authorized as a real one)"))
    return rules


def change_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """/scale, /restart, /rollback and /update patch the Deployment (or its scale); /update
    config reads and patches the workload's ConfigMap."""
    return [
        Rule("apps", ("deployments",), ("patch",), why="/restart, /rollback, /update"),
        Rule("apps", ("deployments/scale",), ("patch",), why="/scale"),
        Rule("", ("configmaps",), ("get", "patch"), why="/update config"),
    ]


def cache_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """The watch-fed cache lists and watches what the commands read, per managed namespace."""
    return [
        Rule("apps", ("deployments", "replicasets"), ("list", "watch"), why="cache"),
        Rule("", ("pods", "persistentvolumeclaims", "configmaps"), ("list", "watch"),
             why="cache"),
    ]


def secret_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """SOPS secrets: get and server-side apply of the configured Secret names only; ``create``
    cannot be limited by name in Kubernetes, so it is granted in their namespaces only."""
    names = sorted({name for ns, name in configured_secrets(config) if ns == namespace})
    if not names:
        return []
    return [Rule("", ("secrets",), ("get", "patch"), tuple(names), why="sops secrets"),
            Rule("", ("secrets",), ("create",), why="sops secrets: the first apply")]


def eviction_rules(config: DeckhandConfig, namespace: str) -> list[Rule]:
    """/failover drill evicts the managed pods on the drilled node (the Eviction API, which
    honours PodDisruptionBudgets; never a plain delete)."""
    return [Rule("", ("pods/eviction",), ("create",), why="/failover drill evicts pods"),
            Rule("policy", ("poddisruptionbudgets",), ("list",),
                 why="/failover drill: the budgets that could block")]


NAMESPACED: tuple[Callable[[DeckhandConfig, str], list[Rule]], ...] = (
    status_rules, follow_rules, deploy_rules, change_rules, cache_rules, secret_rules,
    eviction_rules)


# -- cluster-scoped capabilities (one ClusterRole) --------------------------------------------


def namespace_object_rules(config: DeckhandConfig) -> list[Rule]:
    """/deploy reads and applies the Namespace object of its manifests (managed names only)."""
    return [Rule("", ("namespaces",), ("get", "patch"), tuple(managed_namespaces(config)),
                 why="/deploy applies the workload's Namespace")]


def node_rules(config: DeckhandConfig) -> list[Rule]:
    """The cache watches nodes and persistent volumes (where pods run, where data lives)."""
    return [Rule("", ("nodes", "persistentvolumes"), ("list", "watch"), why="cache")]


def failover_rules(config: DeckhandConfig) -> list[Rule]:
    """/failover status reads nodes, volumes and storage classes (binding mode); /cordon,
    /uncordon and /failover drill read a node and patch its ``spec.unschedulable``;
    /failover out-of-service and in-service patch its ``spec.taints``."""
    return [Rule("", ("nodes", "persistentvolumes"), ("list",), why="/failover status"),
            Rule("", ("nodes",), ("get", "patch"),
                 why="/cordon, /uncordon, /failover drill, out-of-service, in-service"),
            Rule("storage.k8s.io", ("storageclasses",), ("get",),
                 why="/failover status: the binding mode")]


CLUSTER: tuple[Callable[[DeckhandConfig], list[Rule]], ...] = (namespace_object_rules,
                                                               node_rules, failover_rules)


# -- reading the configuration ----------------------------------------------------------------


def configured_secrets(config: DeckhandConfig) -> list[tuple[str, str]]:
    """(namespace, Secret name) of every Secret the ``secrets`` section manages: each entry
    lives in its workload's namespace of every environment it has a file for."""
    found: list[tuple[str, str]] = []
    for name, spec in (getattr(config, "secrets", None) or {}).items():
        for environment in spec.files:
            found.append((config.namespace_of(spec.workload, environment), spec.secret or name))
    return sorted(set(found))


def managed_namespaces(config: DeckhandConfig) -> list[str]:
    """Every namespace a workload of the configuration lives in, plus those of its secrets."""
    names = {config.namespace_of(w, e) for w, wl in config.workloads.items()
             for e in wl.environments}
    names |= {ns for ns, _ in configured_secrets(config)}
    return sorted(names)


def merge(rules: Iterable[Rule]) -> list[Rule]:
    """One rule per (group, resource, names) with the union of the verbs, in a stable order."""
    verbs: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for r in rules:
        for resource in r.resources:
            verbs.setdefault((r.group, resource, r.names), set()).update(r.verbs)
    return [Rule(group, (resource,), tuple(sorted(v)), names)
            for (group, resource, names), v in sorted(verbs.items())]


def _rule_dict(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"apiGroups": [r.group], "resources": list(r.resources),
                           "verbs": list(r.verbs)}
    if r.names:
        out["resourceNames"] = list(r.names)
    return out


# -- the objects ------------------------------------------------------------------------------


def rbac_objects(config: DeckhandConfig, service_account: str = SERVICE_ACCOUNT,
                 sa_namespace: str = SERVICE_ACCOUNT_NAMESPACE) -> list[dict[str, Any]]:
    """The ServiceAccount (and its namespace), the managed Namespaces, a Role + RoleBinding in
    each, and a ClusterRole + ClusterRoleBinding for the cluster-scoped rules."""
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}
    labels = {"app.kubernetes.io/managed-by": "deckhand-rbac"}
    namespaces = managed_namespaces(config)
    objects: list[dict[str, Any]] = []
    for ns in sorted({sa_namespace, *namespaces}):
        objects.append({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": labels}})
    objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": service_account, "namespace": sa_namespace,
                                 "labels": labels}})
    for ns in namespaces:
        rules = merge(r for capability in NAMESPACED for r in capability(config, ns))
        meta = {"name": NAME, "namespace": ns, "labels": labels}
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": meta, "rules": [_rule_dict(r) for r in rules]})
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": meta, "subjects": [subject],
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                    "name": NAME}})
    cluster = merge(r for capability in CLUSTER for r in capability(config))
    cluster_name = f"{NAME}-{sa_namespace}-{service_account}"
    objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": cluster_name, "labels": labels},
                    "rules": [_rule_dict(r) for r in cluster]})
    objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": cluster_name, "labels": labels},
                    "subjects": [subject],
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": cluster_name}})
    return objects


def explain(config: DeckhandConfig) -> list[str]:
    """Comment lines: each capability's rules and why, for the top of the printed YAML."""
    lines = ["Generated by `deckhand rbac` from the configuration; apply with kubectl apply -f.",
             f"Namespaces: {', '.join(managed_namespaces(config))}", "Per namespace:"]
    example = managed_namespaces(config)[0]
    seen: set[tuple[Rule, str]] = set()
    for capability in NAMESPACED:
        for r in capability(config, example):
            if (r, r.why) not in seen:
                seen.add((r, r.why))
                lines.append(f"  {_describe(r)}  # {r.why}")
    lines.append("Cluster-wide:")
    for cluster_capability in CLUSTER:
        for r in cluster_capability(config):
            lines.append(f"  {_describe(r)}  # {r.why}")
    return lines


def _describe(r: Rule) -> str:
    group = f"{r.group}/" if r.group else ""
    names = f" (only {', '.join(r.names)})" if r.names else ""
    return f"{','.join(r.verbs)} {group}{','.join(r.resources)}{names}"


def rbac_yaml(config: DeckhandConfig, service_account: str = SERVICE_ACCOUNT,
              sa_namespace: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    header = "".join(f"# {line}\n" for line in explain(config))
    docs = rbac_objects(config, service_account, sa_namespace)
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True,
                                        default_flow_style=None)


def rbac_main(config_path: Path, out: TextIO, err: TextIO, service_account: str,
              sa_namespace: str) -> int:
    """Print the RBAC for ``config_path``; 2 and one message if the configuration is bad."""
    try:
        config = load_config(config_path)
    except ConfigError as e:
        print(e, file=err)
        return 2
    out.write(rbac_yaml(config, service_account, sa_namespace))
    return 0
