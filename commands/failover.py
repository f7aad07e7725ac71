"""/failover: would a workload survive losing its node (status), and a rehearsal of it (drill).

The verdict is bot/failover.py's; this module gathers what it judges. API calls per answer,
whatever the number of pods or nodes: one list of Nodes and one of PersistentVolumes per
context, three lists per namespace (Deployments, Pods, PersistentVolumeClaims), one read per
distinct storage class: 2 + 3 x namespaces + classes. Nodes, PVs and the namespaced kinds come
from the cache (bot/cache.py) instead once it holds them; only the storage classes are read live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from deckhand.bot import failover
from deckhand.bot.cache import selected
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import DeckhandError, KubeError, UsageError
from deckhand.bot.rollout import progress
from deckhand.commands.base import Command, Deps, Outcome, Plan, Target, View, resolve, split_args
from deckhand.commands.status import Looker, Status

Obj = dict[str, Any]

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
#: How often a drill looks again at evictions a budget refused and at the replacements.
POLL_SECONDS = 1.0


class FailoverArgs(BaseModel):
    sub: Literal["status", "drill"]
    rbac_action: str
    """The RBAC action asked for: "status" for the read-only answer, "failover" for a drill."""
    targets: list[tuple[str, str]]
    node: str | None = None


def every_target(config: DeckhandConfig) -> list[tuple[str, str]]:
    """Every (workload, environment): a node may run any of them, so acting on a node needs the
    right on all (deny by default; the plan then says which are really affected)."""
    return [(w, e) for w, spec in sorted(config.workloads.items()) for e in spec.environments]


class Failover(Command):
    """/failover status [workload|env] [env] | /failover drill <node>

    status (read-only): for each workload, where its pods run, the node's health, the storage
    (class, binding mode, the volume's node affinity), the nodes it could move to, and the
    verdict: "can fail over to netcup-worker-2; pods are evicted 300 s after the node stops
    answering", "cannot fail over: data on local-path pinned to netcup-worker-1", "cannot fail
    over: only one eligible node" or "degraded: pod Pending: <the scheduler's reason>".
    drill <node> (gated, needs the failover action): cordon the node, evict its pods through the
    Eviction API as `kubectl drain --ignore-daemonsets --delete-emptydir-data` does, and wait for
    each workload to be Ready elsewhere; the node stays cordoned until /uncordon <node>.
    Example: /failover status cardano-node production
    """

    name = "failover"

    def parse(self, text: str, config: DeckhandConfig) -> FailoverArgs:
        words = text.split()
        if not words or words[0] not in ("status", "drill"):
            raise UsageError("say status or drill", Failover.usage())
        rest = " ".join(words[1:])
        if words[0] == "drill":
            (node,), _ = split_args(rest, Failover, set(), 1, 1)
            return FailoverArgs(sub="drill", rbac_action="failover", targets=every_target(config),
                                node=node)
        targets = Status().parse(rest, config).targets
        return FailoverArgs(sub="status", rbac_action="status", targets=targets)

    def mutates(self, args: Any) -> bool:
        return bool(args.sub == "drill")

    def read(self, deps: Deps, args: FailoverArgs) -> View:
        world = World(deps)
        lines: list[str] = []
        for workload, environment in args.targets:
            lines += world.judge(workload, environment).details()
        note = world.looker.note()
        title = "Failover" if len(args.targets) != 1 else (
            f"Failover of {args.targets[0][0]} in {args.targets[0][1]}")
        return View(title=title, lines=([f"_{note}_"] if note else []) + lines)

    def plan(self, deps: Deps, args: FailoverArgs) -> Plan:
        assert args.node is not None
        return node_plan(deps, self.name, args.node, drain=True)

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        return drill(deps, plan)


# -- reading the world -----------------------------------------------------------------------------

class World:
    """What one answer reads: namespaces through /status' Looker (cache first, else live, each
    namespace once), Nodes and PVs once per context, storage classes once each."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.looker = Looker(deps)
        self._cluster: dict[tuple[str | None, str], list[Obj]] = {}
        self._classes: dict[tuple[str | None, str], Obj | None] = {}
        self._pods: dict[tuple[str | None, str], list[Obj]] = {}
        """Every pod read so far, by (context, namespace): what nodes already run."""

    def cluster(self, context: str | None, kind: str) -> list[Obj]:
        """Every Node or PersistentVolume: from the cache's informer when it has listed and is
        connected, else one live list."""
        key = (context, kind)
        if key not in self._cluster:
            cached = self._cached(context, kind)
            if cached is None:
                cached, _ = self.deps.kube.list_raw(kind, None, context=context)
            self._cluster[key] = cached
        return self._cluster[key]

    def _cached(self, context: str | None, kind: str) -> list[Obj] | None:
        cache = self.deps.cache
        if cache is None:
            return None
        for informer in cache.informers():
            if (informer.context, informer.namespace, informer.kind) == (context, None, kind) \
                    and informer.synced.is_set() and informer.unreachable_since is None:
                return informer.items()
        return None

    def storage_class(self, context: str | None, name: str) -> Obj | None:
        key = (context, name)
        if key not in self._classes:
            self._classes[key] = self.deps.kube.get("storage.k8s.io/v1", "StorageClass", None,
                                                    name, context)
        return self._classes[key]

    def judge(self, workload: str, environment: str) -> Judged:
        r = resolve(self.deps.config, workload, environment, Failover)
        ns = self.looker.namespace(r.context, r.namespace)
        self._pods[(r.context, r.namespace)] = ns.pods
        d = ns.deployments.get(r.deployment)
        if d is None:
            return Judged(workload, environment, None, [], [], [], {}, None)
        pods = ns.pods_of(d["spec"].get("selector"))
        nodes = self.cluster(r.context, "Node")
        pvs = {p["metadata"]["name"]: p for p in self.cluster(r.context, "PersistentVolume")}
        template = d["spec"]["template"].get("spec") or {}
        volumes = failover.pvs_of(template, ns.pvcs, pvs)
        running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        # A pod carries the tolerations admission added (the eviction delay); the template not.
        spec = (running[0]["spec"] if running else template)
        others = [p for (c, _), pods_there in self._pods.items() if c == r.context
                  for p in pods_there]
        verdict = failover.verdict(spec, pods, nodes, volumes, others)
        classes: dict[str, Obj] = {}
        for v in volumes:
            name = ((v.pvc or {}).get("spec") or {}).get("storageClassName")
            if name:
                sc = self.storage_class(r.context, name)
                if sc is not None:
                    classes[name] = sc
        return Judged(workload, environment, d, pods, nodes, volumes, classes, verdict)


@dataclass
class Judged:
    workload: str
    environment: str
    deployment: Obj | None
    pods: list[Obj]
    nodes: list[Obj]
    volumes: list[failover.Volume]
    classes: dict[str, Obj]
    verdict: failover.Verdict | None

    def details(self) -> list[str]:
        head = f"*{self.workload}* in *{self.environment}*"
        if self.deployment is None or self.verdict is None:
            return [f"{head}: not deployed"]
        lines = [f"{head}: {self.verdict.line}"]
        lines += [f"• {why}" for why in self.verdict.reasons]
        by_name = {n["metadata"]["name"]: n for n in self.nodes}
        shown: set[str] = set()
        for pod in sorted(self.pods, key=lambda p: str(p["metadata"]["name"])):
            lines.append(pod_line(pod, by_name))
            where = (pod.get("spec") or {}).get("nodeName")
            if isinstance(where, str) and where in by_name and where not in shown:
                shown.add(where)
                lines.append(failover.node_health(by_name[where]).describe())
        lines += [v.describe(self.classes) for v in self.volumes]
        return lines


def pod_line(pod: Obj, nodes: dict[str, Obj]) -> str:
    st = pod.get("status") or {}
    restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in st.get("conditions") or [])
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else st.get("phase",
                                                                                   "Pending")
    where = (pod.get("spec") or {}).get("nodeName")
    zone = failover.node_health(nodes[where]).zone if where in nodes else None
    at = f"on {where}" + (f" (zone {zone})" if zone else "") if where else "unscheduled"
    return f"pod {pod['metadata']['name']}: {phase} {at}, " \
           f"{'Ready' if ready else 'not Ready'}, {restarts} restart(s)"


# -- acting on a node ------------------------------------------------------------------------------

def _strictness(deps: Deps, environment: str) -> tuple[int, str]:
    a = deps.config.environments[environment].approval
    return (a.approvers, environment)


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
    contexts = sorted({config.environments[e].context for _, e in targets}, key=lambda c: c or "")
    context = contexts[0] if contexts else None
    node = check_node(deps, deps.kube.get_node(name, context), name, context, world)
    affected: list[tuple[str, str]] = []
    evict: list[tuple[str, str]] = []
    lines: list[str] = []
    for workload, environment in targets:
        r = resolve(config, workload, environment, Failover)
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
    env_pool = affected or targets
    strictest = max((e for _, e in env_pool), key=lambda e: _strictness(deps, e))
    workload = next(w for w, e in env_pool if e == strictest)
    r = resolve(config, workload, strictest, Failover)
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
    return Plan(verb=verb, workload=workload, environment=strictest, namespace=r.namespace,
                context=context, summary=summary,
                target=Target(kind="Node", namespace="", name=name,
                              resource_version=node["metadata"].get("resourceVersion")),
                steps={"evict": [list(x) for x in evict],
                       "affected": [list(x) for x in affected]},
                follow=False)


def drill(deps: Deps, plan: Plan) -> Outcome:
    """Cordon, evict (retrying what a budget refuses until the deadline), then wait for every
    affected workload to be Ready again; the node stays cordoned."""
    node = plan.target.name
    if deps.kube.get_node(node, plan.context) is None:
        raise DeckhandError(f"node {node} no longer exists; nothing was done")
    started = time.monotonic()
    deps.kube.set_unschedulable(node, True, plan.context)
    deadline = started + deps.config.failover.eviction_seconds
    pending = [tuple(x) for x in plan.steps.get("evict", [])]
    refused: list[str] = []
    while pending:
        still = []
        for namespace, pod in pending:
            try:
                deps.kube.evict_pod(namespace, pod, plan.context)
            except KubeError as e:
                if e.status == 404:
                    continue  # already gone: what eviction wanted
                if e.status != 429:
                    raise
                still.append((namespace, pod))
                refused = [str(e)]
        pending = still
        if pending and time.monotonic() > deadline:
            break
        if pending:
            time.sleep(POLL_SECONDS)
    lines = [f"cordoned {node}; evicted "
             f"{len(plan.steps.get('evict', [])) - len(pending)} pod(s)"]
    if pending:
        lines.append(f"gave up on {len(pending)} eviction(s) a disruption budget refused: "
                     + "; ".join(refused))
    ok = not pending
    for workload, environment in plan.steps.get("affected", []):
        ready, how = _ready_elsewhere(deps, workload, environment, node, deadline)
        ok = ok and ready
        lines.append(f"{workload} in {environment}: " + (
            f"Ready again in {round(time.monotonic() - started)} s" if ready else how))
    lines.append(f"{node} stays cordoned: /uncordon {node} when done")
    return Outcome(ok=ok, message="\n".join(lines))


def _ready_elsewhere(deps: Deps, workload: str, environment: str, node: str,
                     deadline: float) -> tuple[bool, str]:
    """Wait until the workload's Deployment is Ready with no pod left on ``node``; else say
    where it is stuck (a Pending pod's scheduler message)."""
    r = resolve(deps.config, workload, environment, Failover)
    how = "not Ready before the deadline"
    while time.monotonic() < deadline:
        d = deps.kube.get_deployment(r.namespace, r.deployment, r.context)
        if d is None:
            return False, "the deployment is gone"
        pods = deps.kube.list_pods(r.namespace, _selector(d), r.context)
        on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]
        # Judged from the pods, not the Deployment's status, which lags behind an eviction.
        ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or [])]
        if len(ready) >= progress(d).desired and not on_node:
            return True, ""
        pending = [x for x in pods if not (x.get("spec") or {}).get("nodeName")]
        if pending:
            how = "stuck: " + failover.verdict(pending[0]["spec"], pending, [], []).line
        time.sleep(POLL_SECONDS)
    return False, how


def _selector(d: Obj) -> str:
    labels = (d["spec"].get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

