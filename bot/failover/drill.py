"""/failover drill: cordon a node, evict its pods through the Eviction API, and wait for each
workload to be Ready elsewhere, each step shown live."""

from __future__ import annotations

import time

from deckhand.bot.cluster.rollout import progress
from deckhand.bot.errors import DeckhandError, KubeNotFound, KubeRateLimited
from deckhand.bot.failover.nodes import selector_of
from deckhand.bot.failover.verdict import node_health, pending_reason, ready_condition
from deckhand.bot.failover.verdict import verdict as failover_verdict
from deckhand.bot.plans import Deps, Outcome, Plan, Steps, resolve

#: How often a drill looks again at evictions a budget refused and at the replacements.
POLL_SECONDS = 1.0


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
            except KubeNotFound:
                steps.say(topic, f"{namespace}/{pod} was already gone")
                continue  # what eviction wanted
            except KubeRateLimited as e:
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
    r = resolve(deps.config, workload, environment)
    topic, head = f"workload {workload}/{environment}", f"{workload} in {environment}: "
    how = "not Ready before the deadline"
    while time.monotonic() < deadline:
        d = deps.kube.get_deployment(r.namespace, r.deployment, r.context)
        if d is None:
            return False, "the deployment is gone"
        pods = deps.kube.list_pods(r.namespace, selector_of(d), r.context)
        on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]
        # Judged from the pods, not the Deployment's status, which lags behind an eviction.
        ready = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                 and ready_condition(p) is not None]
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
            how = "stuck: " + failover_verdict(pending[0]["spec"], pending, [], []).line
            reason = pending_reason(pending[0]) or "not scheduled yet"
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
    return found is not None and node_health(found).ready != "True"
