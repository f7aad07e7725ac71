"""End-to-end: /failover status, a gated drill with production approval, and the refusals,
through the Slack stand-in against the real cluster. Nodes are shared by the session: a test that
stops, cordons or taints a worker uses ``restore_workers``, which puts every worker back
afterwards however the test ended."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.failover.verdict import OUT_OF_SERVICE
from tests.cluster.cluster import TOLERATION_SECONDS, Cluster
from tests.e2e.test_pipeline import IMAGE_A, events, only_request, seed
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

WORKERS = ("netcup-worker-1", "netcup-worker-2")


def with_failover(cfg: dict[str, Any]) -> None:
    """Deployers (U1, group S1) may drill; viewers (U4) may only look."""
    cfg["rbac"]["roles"]["deployer"].append("failover")
    cfg["rbac"]["bindings"].append({"role": "viewer", "users": ["U4"]})


def running_on(core: client.CoreV1Api, ns: str) -> str | None:
    pods = [p for p in core.list_namespaced_pod(ns).items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return pods[0].spec.node_name if len(pods) == 1 else None


def production_pod(make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
                   config: Callable[[dict[str, Any]], None], **bot_args: Any
                   ) -> tuple[Any, SlackStandin, str, str, str]:
    """A bot (Socket Mode) and the cardano-node Running in its production namespace: the bot,
    its stand-in, the namespace, the worker the pod runs on and the other worker."""
    bot = make_bot("socket", config=config, **bot_args)
    ns = bot.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A])
    node = wait_until(lambda: running_on(core, ns), 60, "the pod Running")
    return bot, bot.standin, ns, node, next(n for n in WORKERS if n != node)


def pod(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod | None:
    return next((p for p in core.list_namespaced_pod(ns).items if p.metadata.name == name), None)


def uncordon(core: client.CoreV1Api, node: str) -> None:
    core.patch_node(node, {"spec": {"unschedulable": False}})


def uncordon_all(core: client.CoreV1Api) -> None:
    for node in WORKERS:
        uncordon(core, node)


def marked(core: client.CoreV1Api) -> list[str]:
    """The nodes that carry the out-of-service taint."""
    return [n.metadata.name for n in core.list_node().items
            if any(t.key == OUT_OF_SERVICE for t in n.spec.taints or [])]


def unmark(core: client.CoreV1Api, node: str) -> None:
    """Remove the out-of-service taint from ``node``, if it has it (its other taints stay)."""
    taints = core.read_node(node).spec.taints or []
    kept = [t for t in taints if t.key != OUT_OF_SERVICE]
    if len(kept) != len(taints):
        core.patch_node(node, {"spec": {"taints": kept}})


def stopped(cluster: Cluster, node: str) -> bool:
    """``node``'s kwok process (its heartbeat) is not running: stopped by the test, or died."""
    proc = cluster.procs.get(f"kwok-{node}")
    return proc is None or proc.popen.poll() is not None


@pytest.fixture
def restore_workers(cluster: Cluster, core: client.CoreV1Api) -> Iterator[None]:
    """After the test, however it ended, put the session's shared workers back: start the
    heartbeat of any stopped one (and wait until it is Ready), remove the out-of-service taint,
    uncordon. Every step on every worker runs even if an earlier one raised; the errors are
    raised together at the end, so a failed restore is a test error, never a silent one."""
    yield
    steps: list[tuple[str, Callable[[], None]]] = []
    for node in WORKERS:
        if stopped(cluster, node):  # start_node on a running node would start a second kwok
            steps.append((f"start {node}", partial(cluster.start_node, node)))
    for node in WORKERS:
        steps += [(f"unmark {node}", partial(unmark, core, node)),
                  (f"uncordon {node}", partial(uncordon, core, node))]
    errors: list[Exception] = []
    for what, step in steps:
        try:
            step()
        except Exception as e:  # every step runs; all the errors are raised below
            e.add_note(f"while restoring the workers: {what}")
            errors.append(e)
    if errors:
        raise ExceptionGroup("restoring the shared workers failed", errors)


def test_status_verdict_and_refusals(make_bot: Any, apps: client.AppsV1Api,
                                     core: client.CoreV1Api) -> None:
    _bot, slack, _ns, node, other = production_pod(make_bot, apps, core, with_failover)

    slack.slash_command("/failover", "status cardano-node production", user="U4", channel="C1")
    reply = slack.wait_for_ephemeral(r"can fail over", user="U4")
    assert (f"can fail over to {other}; pods are evicted {TOLERATION_SECONDS} s after the node "
            "stops answering") in reply.visible_text

    cases = [("U1", "drill home-control", r"home-control is the control-plane node"),
             ("U1", "drill netcup-worker-9", r"unknown node 'netcup-worker-9'"),
             ("U4", f"drill {node}", r"Denied: .*failover")]
    for user, text, answer in cases:
        mark = slack.mark()
        slack.slash_command("/failover", text, user=user, channel="C1")
        slack.wait_for_ephemeral(answer, user=user, since=mark)
    mark = slack.mark()
    slack.slash_command("/cordon", node, user="U4", channel="C1")
    slack.wait_for_ephemeral(r"Denied: .*failover", user="U4", since=mark)
    assert slack.calls("chat.postMessage") == []
    assert not any(n.spec.unschedulable for n in core.list_node().items)


@pytest.mark.usefixtures("restore_workers")
def test_drill_in_production_needs_another_approver(make_bot: Any, apps: client.AppsV1Api,
                                                    core: client.CoreV1Api) -> None:
    bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_failover)
    slack.slash_command("/failover", f"drill {node}", user="U1", channel="C1")
    msg = slack.wait_for_message(r"Drill on " + node, channel="C1")
    assert f"can fail over to {other}" in msg.visible_text
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    slack.click("deckhand_approve", user="U1", message=confirmed)  # self-approval
    slack.wait_for_ephemeral(r"cannot approve or reject your own", user="U1")
    assert not core.read_node(node).spec.unschedulable
    slack.click("deckhand_approve", user="U2", message=confirmed)
    done = slack.wait_for_update(confirmed, r"succeeded", timeout=120)
    assert "Ready again in" in done.visible_text
    assert f"/uncordon {node}" in done.visible_text
    assert core.read_node(node).spec.unschedulable is True
    assert running_on(core, ns) == other
    assert events(bot, only_request(bot))[-1] == "succeeded"

    # The result offers Uncordon: a new request in the drill's thread, through the gate.
    mark = slack.mark()
    slack.click("deckhand_uncordon", user="U1", message=done)
    plan = slack.wait_for_message(rf"Uncordon {node}: new pods may be scheduled",
                                  channel="C1", since=mark)
    assert plan.thread_ts == msg.ts
    slack.click("deckhand_confirm", user="U1", message=plan)
    confirmed = slack.wait_for_update(plan, r"confirmed")
    assert core.read_node(node).spec.unschedulable is True  # production: not yet approved
    slack.click("deckhand_approve", user="U2", message=confirmed)
    slack.wait_for_update(confirmed, r"succeeded", timeout=60)
    assert not core.read_node(node).spec.unschedulable


@pytest.mark.usefixtures("restore_workers")
def test_node_failure_thread(make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
                             cluster: Cluster) -> None:
    def channel(cfg: dict[str, Any]) -> None:
        with_failover(cfg)
        cfg["failover"] = {"channel": "C1"}

    _bot, slack, ns, node, other = production_pod(make_bot, apps, core, channel)
    cluster.stop_node(node)
    msg = slack.wait_for_message(rf"\*{node}\* (stopped answering|turned NotReady)",
                                 channel="C1", timeout=90)
    assert "cardano-node in production" in msg.visible_text
    done = slack.wait_for_update(msg, r"failover completed in \d+ s", timeout=120)
    assert f"cardano-node in production: replacement scheduled on {other}" in \
        done.visible_text
    assert "its pods were evicted at" in done.visible_text
    assert running_on(core, ns) == other
    cluster.start_node(node)  # restore_workers starts it if the test ends before this
    slack.wait_for_update(done, rf"{node} is Ready again", timeout=60)
