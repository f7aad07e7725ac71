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
from deckhand.commands.base import (
    Command,
    Deps,
    Outcome,
    Plan,
    Resolved,
    Target,
    View,
    resolve,
    split_args,
)
from deckhand.commands.status import Looker, Status

Obj = dict[str, Any]

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
#: How often a drill looks again at evictions a budget refused and at the replacements.
POLL_SECONDS = 1.0


SUBCOMMANDS = ("status", "drill", "out-of-service", "in-service")
#: Kubernetes' non-graceful node shutdown: on a NotReady node with this taint, the pod garbage
#: collector force-deletes the pods stuck Terminating and their volumes are detached.
OUT_OF_SERVICE_TAINT = {"key": failover.OUT_OF_SERVICE, "value": "nodeshutdown",
                        "effect": "NoExecute"}
#: How long marking a node out of service waits for its stuck pods to be force-deleted (the pod
#: garbage collector looks every 20 s).
GC_WAIT_SECONDS = 90.0


class FailoverArgs(BaseModel):
    sub: Literal["status", "drill", "out-of-service", "in-service"]
    rbac_action: str
    """The RBAC action asked for: "status" for the read-only answer, "failover" for the rest."""
    targets: list[tuple[str, str]]
    node: str | None = None


def every_target(config: DeckhandConfig) -> list[tuple[str, str]]:
    """Every (workload, environment): a node may run any of them, so acting on a node needs the
    right on all (deny by default; the plan then says which are really affected)."""
    return [(w, e) for w, spec in sorted(config.workloads.items()) for e in spec.environments]


class Failover(Command):
    """/failover status [workload|env] [env] | /failover drill|out-of-service|in-service <node>

    status (read-only): for each workload, where its pods run, the node's health, the storage
    (class, binding mode, the volume's node affinity), the nodes it could move to, and the
    verdict: "can fail over to netcup-worker-2; pods are evicted 300 s after the node stops
    answering", "cannot fail over: data on local-path pinned to netcup-worker-1", "cannot fail
    over: only one eligible node" or "degraded: pod Pending: <the scheduler's reason>".
    drill <node> (gated, needs the failover action): cordon the node, evict its pods through the
    Eviction API as `kubectl drain --ignore-daemonsets --delete-emptydir-data` does, and wait for
    each workload to be Ready elsewhere, showing each step live; the node stays cordoned until
    /uncordon <node>.
    out-of-service <node> (gated, failover action, approved like the strictest environment):
    for a node that is down and stays down. Adds the taint node.kubernetes.io/out-of-service=
    nodeshutdown:NoExecute, so Kubernetes force-deletes the pods stuck Terminating there and
    releases their volumes (non-graceful node shutdown). Only safe when the node is really
    powered off; refused unless it has stopped answering (Ready Unknown). in-service <node>
    removes the taint.
    Example: /failover status cardano-node production
    """

    name = "failover"

    def parse(self, text: str, config: DeckhandConfig) -> FailoverArgs:
        words = text.split()
        if not words or words[0] not in SUBCOMMANDS:
            raise UsageError("say status, drill, out-of-service or in-service", Failover.usage())
        rest = " ".join(words[1:])
        if words[0] != "status":
            (node,), _ = split_args(rest, Failover, set(), 1, 1)
            return FailoverArgs.model_validate({"sub": words[0], "rbac_action": "failover",
                                                "targets": every_target(config), "node": node})
        targets = Status().parse(rest, config).targets
        return FailoverArgs(sub="status", rbac_action="status", targets=targets)

    def mutates(self, args: Any) -> bool:
        return bool(args.sub != "status")

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
        if args.sub == "drill":
            return node_plan(deps, self.name, args.node, drain=True)
        return service_plan(deps, self.name, args.node, out=args.sub == "out-of-service")

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        if "out_of_service" in plan.steps:
            return set_service(deps, plan)
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
    ready = failover.ready_condition(pod) is not None
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else st.get("phase",
                                                                                   "Pending")
    where = (pod.get("spec") or {}).get("nodeName")
    zone = failover.node_health(nodes[where]).zone if where in nodes else None
    at = f"on {where}" + (f" (zone {zone})" if zone else "") if where else "unscheduled"
    return f"pod {pod['metadata']['name']}: {phase} {at}, " \
           f"{'Ready' if ready else 'not Ready'}, {restarts} restart(s)"


# -- acting on a node ------------------------------------------------------------------------------

def _strictness(deps: Deps, environment: str) -> tuple[int, bool, float, bool, str]:
    """More approvals first; then approvers limited to roles; then the shorter lifetime; on a
    full tie, production (out of service is "approved like a production action")."""
    a = deps.config.environments[environment].approval
    return (a.approvers, bool(a.approver_roles), -a.lifetime.total_seconds(),
            environment == "production", environment)


def _strictest(deps: Deps, pool: list[tuple[str, str]]) -> Resolved:
    """The (workload, environment) of ``pool`` whose environment asks for the most approvals:
    the request is approved like that environment."""
    environment = max((e for _, e in pool), key=lambda e: _strictness(deps, e))
    workload = next(w for w, e in pool if e == environment)
    return resolve(deps.config, workload, environment, Failover)


def _context(deps: Deps) -> str | None:
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
    context = _context(deps)
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
    r = _strictest(deps, affected or targets)
    workload, strictest = r.workload, r.environment
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
    steps = Steps(deps)
    started = time.monotonic()
    deps.kube.set_unschedulable(node, True, plan.context)
    steps.say("cordon", f"cordoned {node}")
    deadline = started + deps.config.failover.eviction_seconds
    pending = [tuple(x) for x in plan.steps.get("evict", [])]
    refused: list[str] = []
    tries: dict[str, int] = {}
    while pending:
        still = []
        for namespace, pod in pending:
            topic = f"evict {namespace}/{pod}"
            try:
                deps.kube.evict_pod(namespace, pod, plan.context)
                steps.say(topic, f"evicted {namespace}/{pod}")
            except KubeError as e:
                if e.status == 404:
                    steps.say(topic, f"{namespace}/{pod} was already gone")
                    continue  # what eviction wanted
                if e.status != 429:
                    raise
                still.append((namespace, pod))
                refused = [str(e)]
                tries[topic] = tries.get(topic, 0) + 1
                steps.say(topic, f"eviction of {namespace}/{pod} refused by a disruption budget "
                                 f"(429) {tries[topic]} time(s); retrying until "
                                 f"{deps.config.failover.eviction_seconds} s")
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
        ready, how = _ready_elsewhere(deps, workload, environment, node, deadline, started,
                                      steps)
        ok = ok and ready
        lines.append(f"{workload} in {environment}: " + (
            f"Ready again in {round(time.monotonic() - started)} s{how}" if ready else how))
    lines.append(f"{node} stays cordoned: /uncordon {node} when done")
    return Outcome(ok=ok, message="\n".join(lines))


def _ready_elsewhere(deps: Deps, workload: str, environment: str, node: str,
                     deadline: float, started: float, steps: Steps) -> tuple[bool, str]:
    """Wait until the workload's Deployment is Ready with no pod left on ``node``, showing
    where its replacement is (scheduled on X, Pending and why, Ready in N s); else say where it
    is stuck (a Pending pod's scheduler message)."""
    r = resolve(deps.config, workload, environment, Failover)
    topic, head = f"workload {workload}/{environment}", f"{workload} in {environment}: "
    how = "not Ready before the deadline"
    while time.monotonic() < deadline:
        d = deps.kube.get_deployment(r.namespace, r.deployment, r.context)
        if d is None:
            return False, "the deployment is gone"
        pods = deps.kube.list_pods(r.namespace, _selector(d), r.context)
        on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]
        # Judged from the pods, not the Deployment's status, which lags behind an eviction.
        ready = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                 and failover.ready_condition(p) is not None]
        # A pod evicted from a node that stopped answering stays Terminating (no kubelet
        # confirms it): it does not hold the workload back, but it is worth saying.
        live = [p for p in on_node if not p["metadata"].get("deletionTimestamp")]
        if len(ready) >= progress(d).desired and not live:
            where = ", ".join(sorted({str(p["spec"].get("nodeName")) for p in ready}))
            steps.say(topic, f"{head}Ready on {where} in {round(time.monotonic() - started)} s")
            if on_node and _down(deps, node, r.context):
                return True, (f"; its old pod is stuck Terminating on {node}, which does not "
                              f"answer (/failover out-of-service {node} once it is powered off)")
            if not on_node:
                return True, ""
        pending = [x for x in pods if not (x.get("spec") or {}).get("nodeName")]
        if pending:
            how = "stuck: " + failover.verdict(pending[0]["spec"], pending, [], []).line
            reason = failover.pending_reason(pending[0]) or "not scheduled yet"
            steps.say(topic, f"{head}replacement Pending: {reason}")
        else:
            moved = sorted({str(p["spec"]["nodeName"]) for p in pods
                            if p["spec"]["nodeName"] != node
                            and not p["metadata"].get("deletionTimestamp")})
            if moved:
                steps.say(topic, f"{head}replacement scheduled on {', '.join(moved)}")
        time.sleep(POLL_SECONDS)
    return False, how


def _down(deps: Deps, node: str, context: str | None) -> bool:
    """The node stopped answering or reports NotReady: its pods' deletions will not finish."""
    found = deps.kube.get_node(node, context)
    return found is not None and failover.node_health(found).ready != "True"


class Steps:
    """The live lines of a long execution, one per topic (a later line about the same pod or
    workload replaces the earlier one, in place), shown through ``Deps.progress`` only when
    they changed."""

    def __init__(self, deps: Deps) -> None:
        self._show = deps.progress
        self._lines: dict[str, str] = {}

    def say(self, topic: str, line: str) -> None:
        if self._lines.get(topic) == line:
            return
        self._lines[topic] = line
        if self._show is not None:
            self._show(list(self._lines.values()))


# -- marking a dead node out of service ------------------------------------------------------------

def _pods_on(deps: Deps, world: World, name: str) -> list[tuple[str, Obj]]:
    """Every pod of Deckhand's namespaces that the API places on node ``name``, with the
    "workload in environment" whose namespace holds it."""
    seen: set[tuple[str | None, str]] = set()
    found: list[tuple[str, Obj]] = []
    for workload, environment in every_target(deps.config):
        r = resolve(deps.config, workload, environment, Failover)
        if (r.context, r.namespace) in seen:
            continue
        seen.add((r.context, r.namespace))
        for pod in world.looker.namespace(r.context, r.namespace).pods:
            if (pod.get("spec") or {}).get("nodeName") == name:
                found.append((f"{workload} in {environment}", pod))
    return found


def service_plan(deps: Deps, verb: str, name: str, *, out: bool) -> Plan:
    """The plan of /failover out-of-service (``out``) or in-service on node ``name``: refused
    for a node Deckhand may not act on, for a node still answering (out: see refuse_live) or a
    node not marked (in); it
    lists the pods stuck Terminating there, and is approved like the strictest environment
    configured (the taint acts on every pod of the node, whoever's)."""
    world = World(deps)
    context = _context(deps)
    node = check_node(deps, deps.kube.get_node(name, context), name, context, world)
    health = failover.node_health(node)
    t = OUT_OF_SERVICE_TAINT
    taint = f"{t['key']}={t['value']}:{t['effect']}"
    if out:
        refuse_live(name, health.ready)
    if out and failover.out_of_service(node):
        raise DeckhandError(f"{name} is already marked out of service; /failover in-service "
                            f"{name} removes the mark. Nothing was changed.")
    if not out and not failover.out_of_service(node):
        raise DeckhandError(f"{name} is not marked out of service (no "
                            f"{failover.OUT_OF_SERVICE} taint); nothing to do.")
    pods = _pods_on(deps, world, name)
    stuck = [(w, p) for w, p in pods if p["metadata"].get("deletionTimestamp")]
    running = [(w, p) for w, p in pods if not p["metadata"].get("deletionTimestamp")]
    if out:
        summary = [
            f"Mark {name} out of service: add the taint {taint}. Kubernetes then force-deletes "
            "the pods stuck Terminating there and detaches their volumes, so that their "
            "replacements can start on another node (non-graceful node shutdown).",
            f"⚠️ Only safe if {name} is really powered off (or cut off from its storage). If it "
            "still runs, its pods keep writing to volumes their replacements will use too.",
            health.describe()]
        summary += [f"stuck Terminating: {p['metadata']['namespace']}/{p['metadata']['name']} "
                    f"({w}), force-deleted" for w, p in stuck] or [
            "no pod of Deckhand's namespaces is stuck Terminating there"]
        summary += [f"still placed there: {p['metadata']['namespace']}/{p['metadata']['name']} "
                    f"({w}), deleted too (it does not tolerate the taint)" for w, p in running]
        summary.append(f"/failover in-service {name} removes the taint once the node is "
                       "repaired.")
    else:
        summary = [f"Back in service {name}: remove the taint {failover.OUT_OF_SERVICE}; pods "
                   "may run there again (as far as its other taints and a cordon allow).",
                   health.describe()]
    r = _strictest(deps, every_target(deps.config))
    return Plan(verb=verb, workload=r.workload, environment=r.environment,
                namespace=r.namespace, context=context, summary=summary,
                target=Target(kind="Node", namespace="", name=name,
                              resource_version=node["metadata"].get("resourceVersion")),
                steps={"out_of_service": out,
                       "stuck": [[p["metadata"]["namespace"], p["metadata"]["name"]]
                                 for _, p in stuck + running]},
                follow=False)


def refuse_live(name: str, ready: str, since_planned: bool = False) -> None:
    """Out of service only for a node that stopped answering (Ready "Unknown": no kubelet
    reports). Ready "True", or "False" (its kubelet runs and reports NotReady), means the node
    is on: its pods would be force-deleted while they may still run and write to volumes."""
    if ready == "Unknown":
        return
    now = " since this was planned" if since_planned else ""
    state = ("is Ready" if ready == "True" else
             "reports NotReady itself (its kubelet runs, so the node is on)")
    raise DeckhandError(f"{name} {state}{now}: Deckhand marks a node out of service only when it "
                        "has stopped answering (Ready Unknown). On a running node its pods would "
                        "be force-deleted while they may still write to their volumes. Nothing "
                        "was changed.")


def set_service(deps: Deps, plan: Plan) -> Outcome:
    """Add or remove the out-of-service taint (the node's other taints stay); after adding it,
    wait for the pods the plan listed to be force-deleted, showing each one as it goes."""
    name, out = plan.target.name, bool(plan.steps["out_of_service"])
    node = deps.kube.get_node(name, plan.context)
    if node is None:
        raise DeckhandError(f"node {name} no longer exists; nothing was done")
    if out:
        refuse_live(name, failover.node_health(node).ready, since_planned=True)
    if not deps.kube.set_taint(name, OUT_OF_SERVICE_TAINT, out, plan.context):
        return Outcome(ok=True, message=f"{name} was already {'' if out else 'not '}marked out "
                                        "of service; nothing was done")
    if not out:
        return Outcome(ok=True, message=f"{name} is back in service: removed the taint "
                                        f"{failover.OUT_OF_SERVICE}")
    steps = Steps(deps)
    steps.say("taint", f"marked {name} out of service")
    left = {(ns, pod) for ns, pod in plan.steps.get("stuck", [])}
    started = time.monotonic()
    deadline = started + GC_WAIT_SECONDS
    while left:
        for namespace in sorted({ns for ns, _ in left}):
            there = {p["metadata"]["name"]
                     for p in deps.kube.list_pods(namespace, "", plan.context)
                     if (p.get("spec") or {}).get("nodeName") == name}
            for ns, pod in sorted(left):
                if ns == namespace and pod not in there:
                    left.discard((ns, pod))
                    steps.say(f"pod {ns}/{pod}", f"{ns}/{pod} force-deleted")
        if not left or time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    done = f"marked {name} out of service (taint {failover.OUT_OF_SERVICE})"
    after = f"; /failover in-service {name} once it is repaired"
    if left:
        return Outcome(ok=False, message=f"{done}, but after {GC_WAIT_SECONDS:g} s these pods "
                       "are still there: " + ", ".join(f"{ns}/{p}" for ns, p in sorted(left))
                       + after)
    gone = len(plan.steps.get("stuck", []))
    took = f" in {round(time.monotonic() - started)} s" if gone else ""
    return Outcome(ok=True, message=f"{done}; {gone} pod(s) left on it were force-deleted"
                   + took + after)


def _selector(d: Obj) -> str:
    labels = (d["spec"].get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

