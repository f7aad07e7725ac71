"""Acting on a node: which nodes Deckhand may act on, what a node runs, and the plan of /cordon,
/uncordon and /failover drill (the drill itself is bot/failover/drill.py)."""

from __future__ import annotations

from typing import Any

from deckhand.bot.cluster.cache import selected
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import DeckhandError, UsageError
from deckhand.bot.failover.world import World
from deckhand.bot.plans import Deps, Plan, Resolved, Target, resolve

Obj = dict[str, Any]

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def every_target(config: DeckhandConfig) -> list[tuple[str, str]]:
    """Every (workload, environment): a node may run any of them, so acting on a node needs the
    right on all (deny by default; the plan then says which are really affected)."""
    return [(w, e) for w, spec in sorted(config.workloads.items()) for e in spec.environments]


def _strictness(deps: Deps, environment: str) -> tuple[int, bool, float, bool, str]:
    """More approvals first; then approvers limited to roles; then the shorter lifetime; on a
    full tie, production (out of service is "approved like a production action")."""
    a = deps.config.environments[environment].approval
    return (a.approvers, bool(a.approver_roles), -a.lifetime.total_seconds(),
            environment == "production", environment)


def strictest(deps: Deps, pool: list[tuple[str, str]]) -> Resolved:
    """The (workload, environment) of ``pool`` whose environment asks for the most approvals:
    the request is approved like that environment."""
    environment = max((e for _, e in pool), key=lambda e: _strictness(deps, e))
    workload = next(w for w, e in pool if e == environment)
    return resolve(deps.config, workload, environment)


def node_context(deps: Deps) -> str | None:
    """The cluster whose nodes a node command acts on (the first configured context)."""
    config = deps.config
    contexts = sorted({config.environments[e].context for _, e in every_target(config)},
                      key=lambda c: c or "")
    return contexts[0] if contexts else None


def check_node(deps: Deps, node: Obj | None, name: str, context: str | None,
               world: World) -> Obj:
    """The node, if Deckhand may act on it; else a refusal that names the reason."""
    if node is None:
        known = ", ".join(sorted(n["metadata"]["name"] for n in world.cluster(context, "Node")))
        raise UsageError(f"unknown node {name!r} (nodes: {known})")
    labels = node["metadata"].get("labels") or {}
    settings = deps.config.failover
    if CONTROL_PLANE in labels and not settings.allow_control_plane:
        raise DeckhandError(f"{name} is the control-plane node; Deckhand does not cordon or "
                            "drain it (failover.allow_control_plane in the configuration). "
                            "Nothing was changed.")
    if not settings.matches(labels):
        raise DeckhandError(f"{name} does not match failover.drainable "
                            f"({settings.drainable!r}); Deckhand does not act on it. Nothing was "
                            "changed.")
    return node


def evictable(pod: Obj) -> bool:
    """What `kubectl drain --ignore-daemonsets --delete-emptydir-data` evicts: not DaemonSet
    pods (their controller would put them back), not mirror pods (the kubelet owns them), not
    pods that already finished."""
    meta = pod["metadata"]
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def node_plan(deps: Deps, verb: str, name: str, *, drain: bool, cordon: bool = True) -> Plan:
    """The plan of /cordon, /uncordon or /failover drill on node ``name``: the pods that will be
    evicted (Deckhand's namespaces only), the verdict of each affected workload, and the
    approval of the strictest environment among them."""
    world = World(deps)
    config = deps.config
    targets = every_target(config)
    context = node_context(deps)
    node = check_node(deps, deps.kube.get_node(name, context), name, context, world)
    affected: list[tuple[str, str]] = []
    evict: list[tuple[str, str]] = []
    lines: list[str] = []
    for workload, environment in targets:
        r = resolve(config, workload, environment)
        ns = world.looker.namespace(r.context, r.namespace)
        d = ns.deployments.get(r.deployment)
        if d is None:
            continue
        pods = [p for p in ns.pods_of(d["spec"].get("selector"))
                if (p.get("spec") or {}).get("nodeName") == name and evictable(p)]
        if not pods:
            continue
        affected.append((workload, environment))
        evict += [(r.namespace, p["metadata"]["name"]) for p in pods]
        if drain:
            budgets, _ = deps.kube.list_raw("PodDisruptionBudget", r.namespace, context=r.context)
            for b in budgets:
                if any(selected([p], (b.get("spec") or {}).get("selector")) for p in pods):
                    allowed = (b.get("status") or {}).get("disruptionsAllowed", 0)
                    lines.append(f"PodDisruptionBudget {r.namespace}/{b['metadata']['name']} "
                                 f"covers {workload}: {allowed} disruption(s) allowed now")
        judged = world.judge(workload, environment)
        verdict = judged.verdict
        line = f"*{workload}* in *{environment}*: " + (verdict.line if verdict else "?")
        if cordon and verdict is not None and not verdict.can:
            line += " — it will be down until /uncordon " + name
        lines.append(line)
    r = strictest(deps, affected or targets)
    workload, environment = r.workload, r.environment
    if not cordon:
        summary = [f"Uncordon {name}: new pods may be scheduled on it again"]
    elif drain:
        summary = [f"Drill on {name}: cordon it, evict {len(evict)} pod(s) through the "
                   "Eviction API (PodDisruptionBudgets are honoured: refused evictions are "
                   f"retried for {config.failover.eviction_seconds} s), then wait for each "
                   "workload to be Ready elsewhere. The node stays cordoned until "
                   f"/uncordon {name}."]
        summary += [f"evict {ns}/{pod}" for ns, pod in evict]
        summary += lines or ["no Deckhand workload runs there"]
    else:
        summary = [f"Cordon {name}: no new pods are scheduled on it; the pods running there "
                   "stay (a drill evicts them).", *lines]
    return Plan(verb=verb, workload=workload, environment=environment, namespace=r.namespace,
                context=context, summary=summary,
                target=Target(kind="Node", namespace="", name=name,
                              resource_version=node["metadata"].get("resourceVersion")),
                steps={"evict": [list(x) for x in evict],
                       "affected": [list(x) for x in affected]},
                follow=False)


def selector_of(d: Obj) -> str:
    labels = (d["spec"].get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
