"""End-to-end: marking a dead node out of service (and back in service) through the gate with
production approval, the refusals, and a drill's live progress in its request message, through
the Slack stand-in against the real cluster.

Nodes are shared by the session: a test that stops a node's heartbeat, taints or cordons a node
uses ``restore_workers`` (tests/e2e/test_failover.py), which puts every worker back afterwards."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.failover.verdict import OUT_OF_SERVICE
from tests.cluster.cluster import Cluster
from tests.e2e.test_failover import (  # noqa: F401 - restore_workers: a fixture
    marked,
    pod,
    production_pod,
    restore_workers,
    running_on,
    with_failover,
)
from tests.slack.blocks import parse_blocks, visible_text
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

KEY = OUT_OF_SERVICE


@pytest.mark.usefixtures("restore_workers")
def test_out_of_service_force_deletes_the_stuck_pod_and_in_service_removes_the_taint(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
        cluster: Cluster) -> None:
    _bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_failover)
    (old,) = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
    cluster.stop_node(node)
    wait_until(lambda: (p := pod(core, ns, old)) is not None
               and p.metadata.deletion_timestamp is not None, 90,
               "the old pod evicted (Terminating)")
    wait_until(lambda: running_on(core, ns) == other, 90, "the replacement Running")
    # No kubelet confirms the deletion on a dead node: the old pod stays Terminating.
    stuck = pod(core, ns, old)
    assert stuck is not None and stuck.metadata.deletion_timestamp is not None

    slack.slash_command("/failover", f"out-of-service {node}", user="U1", channel="C1")
    msg = slack.wait_for_message(rf"Mark {node} out of service", channel="C1")
    text = msg.visible_text
    assert f"{KEY}=nodeshutdown:NoExecute" in text
    assert f"Only safe if {node} is really powered off" in text
    assert f"stuck Terminating: {ns}/{old} (cardano-node in production)" in text
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    slack.click("deckhand_approve", user="U1", message=confirmed)  # self-approval
    slack.wait_for_ephemeral(r"cannot approve or reject your own", user="U1")
    assert marked(core) == [] and pod(core, ns, old) is not None
    slack.click("deckhand_approve", user="U2", message=confirmed)
    done = slack.wait_for_update(confirmed, r"succeeded|failed", timeout=150)
    assert "succeeded" in done.visible_text, done.visible_text
    assert f"marked {node} out of service" in done.visible_text
    took = re.search(r"1 pod\(s\) left on it were force-deleted in (\d+) s", done.visible_text)
    assert took, done.visible_text
    assert pod(core, ns, old) is None
    assert marked(core) == [node]
    assert running_on(core, ns) == other

    mark = slack.mark()
    slack.slash_command("/failover", f"in-service {node}", user="U1", channel="C1")
    back = slack.wait_for_message(rf"Back in service {node}", channel="C1", since=mark)
    slack.click("deckhand_confirm", user="U1", message=back)
    confirmed = slack.wait_for_update(back, r"confirmed")
    slack.click("deckhand_approve", user="U2", message=confirmed)
    slack.wait_for_update(confirmed, rf"{node} is back in service", timeout=60)
    assert marked(core) == []
    # The node-lifecycle controller's own taints are left to it.
    assert any(t.key == "node.kubernetes.io/unreachable"
               for t in core.read_node(node).spec.taints or [])


def test_out_of_service_refusals(make_bot: Any, core: client.CoreV1Api) -> None:
    bot = make_bot("socket", config=with_failover)
    slack = bot.standin
    cases = [("U1", "out-of-service netcup-worker-1",
              r"netcup-worker-1 is Ready: Deckhand marks a node out of service only when it has "
              r"stopped answering \(Ready Unknown\).*Nothing was changed"),
             ("U1", "out-of-service home-control", r"home-control is the control-plane node"),
             ("U1", "out-of-service netcup-worker-9", r"unknown node 'netcup-worker-9'"),
             ("U1", "in-service netcup-worker-2",
              r"netcup-worker-2 is not marked out of service.*nothing to do"),
             ("U4", "out-of-service netcup-worker-1", r"Denied: .*failover")]
    for user, text, answer in cases:
        mark = slack.mark()
        slack.slash_command("/failover", text, user=user, channel="C1")
        slack.wait_for_ephemeral(answer, user=user, since=mark)
    assert slack.calls("chat.postMessage") == []
    assert marked(core) == []


@pytest.mark.usefixtures("restore_workers")
def test_drill_progress_edits_the_message_before_the_end(make_bot: Any, apps: client.AppsV1Api,
                                                         core: client.CoreV1Api) -> None:
    _bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_failover)
    slack.slash_command("/failover", f"drill {node}", user="U1", channel="C1")
    msg = slack.wait_for_message(r"Drill on " + node, channel="C1")
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    mark = slack.mark()
    slack.click("deckhand_approve", user="U2", message=confirmed)
    slack.wait_for_update(confirmed, r"succeeded", timeout=120)
    edits = [visible_text(c.args.get("text") or "", parse_blocks(c.args.get("blocks")) or [])
             for c in slack.calls("chat.update", since=mark, ok_only=True)
             if c.args.get("ts") == msg.ts]
    final = next(i for i, e in enumerate(edits) if "succeeded" in e)
    # The drill waits at least one poll after its evictions before it can end, so the edit that
    # shows them is sent before the final one (later lines may be coalesced into the final
    # edit by the outbox: tests/integration/test_failover.py sees every one of them).
    live = [e for e in edits[:final] if f"cordoned {node}" in e
            and f"evicted {ns}/cardano-node-" in e and "executing" in e]
    assert live, edits
    assert running_on(core, ns) == other
