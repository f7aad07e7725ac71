"""Marking a node that is down and stays down out of service (Kubernetes' non-graceful node
shutdown), and back in service."""

from __future__ import annotations

import time
from typing import Any

from deckhand.bot.errors import DeckhandError
from deckhand.bot.failover.nodes import check_node, every_target, node_context, strictest
from deckhand.bot.failover.verdict import OUT_OF_SERVICE, node_health, out_of_service
from deckhand.bot.failover.world import World
from deckhand.bot.plans import Deps, Outcome, Plan, Steps, Target, resolve

Obj = dict[str, Any]

#: Kubernetes' non-graceful node shutdown: on a NotReady node with this taint, the pod garbage
#: collector force-deletes the pods stuck Terminating and their volumes are detached.
OUT_OF_SERVICE_TAINT = {"key": OUT_OF_SERVICE, "value": "nodeshutdown",
                        "effect": "NoExecute"}
#: How long marking a node out of service waits for its stuck pods to be force-deleted (the pod
#: garbage collector looks every 20 s).
GC_WAIT_SECONDS = 90.0
#: How often it looks again.
POLL_SECONDS = 1.0


def _pods_on(deps: Deps, world: World, name: str) -> list[tuple[str, Obj]]:
    """Every pod of Deckhand's namespaces that the API places on node ``name``, with the
    "workload in environment" whose namespace holds it."""
    seen: set[tuple[str | None, str]] = set()
    found: list[tuple[str, Obj]] = []
    for workload, environment in every_target(deps.config):
        r = resolve(deps.config, workload, environment)
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
    context = node_context(deps)
    node = check_node(deps, deps.kube.get_node(name, context), name, context, world)
    health = node_health(node)
    t = OUT_OF_SERVICE_TAINT
    taint = f"{t['key']}={t['value']}:{t['effect']}"
    if out:
        refuse_live(name, health.ready)
    if out and out_of_service(node):
        raise DeckhandError(f"{name} is already marked out of service; /failover in-service "
                            f"{name} removes the mark. Nothing was changed.")
    if not out and not out_of_service(node):
        raise DeckhandError(f"{name} is not marked out of service (no "
                            f"{OUT_OF_SERVICE} taint); nothing to do.")
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
        summary = [f"Back in service {name}: remove the taint {OUT_OF_SERVICE}; pods "
                   "may run there again (as far as its other taints and a cordon allow).",
                   health.describe()]
    r = strictest(deps, every_target(deps.config))
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
        refuse_live(name, node_health(node).ready, since_planned=True)
    if not deps.kube.set_taint(name, OUT_OF_SERVICE_TAINT, out, plan.context):
        return Outcome(ok=True, message=f"{name} was already {'' if out else 'not '}marked out "
                                        "of service; nothing was done")
    if not out:
        return Outcome(ok=True, message=f"{name} is back in service: removed the taint "
                                        f"{OUT_OF_SERVICE}")
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
    done = f"marked {name} out of service (taint {OUT_OF_SERVICE})"
    after = f"; /failover in-service {name} once it is repaired"
    if left:
        return Outcome(ok=False, message=f"{done}, but after {GC_WAIT_SECONDS:g} s these pods "
                       "are still there: " + ", ".join(f"{ns}/{p}" for ns, p in sorted(left))
                       + after)
    gone = len(plan.steps.get("stuck", []))
    took = f" in {round(time.monotonic() - started)} s" if gone else ""
    return Outcome(ok=True, message=f"{done}; {gone} pod(s) left on it were force-deleted"
                   + took + after)
