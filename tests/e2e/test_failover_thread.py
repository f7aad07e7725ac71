"""End-to-end: the node-failure message survives a restart of the bot, and its buttons open
requests through the gate in its thread, through the Slack stand-in against the real cluster.

A node is failed by killing its heartbeat (``cluster.stop_node``); nodes are shared by the
session, so every test uses ``restore_workers`` (tests/e2e/test_failover.py), which starts the
node again, removes the out-of-service taint and uncordons afterwards, however the test ended.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.failover import threads as node_threads
from deckhand.bot.failover.buttons import (
    ACTION_NODE_CORDON,
    ACTION_NODE_DRAIN,
    ACTION_NODE_IN_SERVICE,
    ACTION_NODE_OUT_OF_SERVICE,
)
from deckhand.bot.failover.verdict import OUT_OF_SERVICE
from deckhand.bot.intake.blocks import ACTION_APPROVE, ACTION_CONFIRM
from tests.cluster.cluster import Cluster
from tests.e2e.test_failover import (  # noqa: F401 - restore_workers: a fixture
    marked,
    pod,
    production_pod,
    restore_workers,
    running_on,
    with_failover,
)
from tests.slack.model import Message
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

def with_channel(cfg: dict[str, Any]) -> None:
    with_failover(cfg)
    cfg["failover"] = {"channel": "C1"}


def failure(node: str) -> str:
    return rf"\*?{re.escape(node)}\*? (stopped answering|turned NotReady)"


def failure_messages(slack: SlackStandin, node: str) -> list[Message]:
    """Top-level messages in C1 about the failure of ``node``."""
    return [m for m in slack.messages("C1") if not m.is_reply
            and re.search(failure(node), m.visible_text)]


@pytest.mark.usefixtures("restore_workers")
def test_a_restart_during_a_failover_continues_the_same_message(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api, cluster: Cluster,
        tmp_path: Path) -> None:
    database = tmp_path / "kept.db"
    bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_channel, database=database)
    cluster.stop_node(node)
    msg = slack.wait_for_message(failure(node), channel="C1", timeout=90)
    assert "cardano-node in production" in msg.visible_text
    wait_until(lambda: (bot.store.latest_node_thread(node) or pytest.fail()).ts == msg.ts,
               30, "the message's ts in the store")
    bot.stop()

    at_restart = slack.message("C1", msg.ts)
    mark = slack.mark()
    second = make_bot("socket", config=with_channel, database=database)
    done = slack.wait_for_update(at_restart, r"failover completed in \d+ s", timeout=120)
    assert done.ts == msg.ts
    assert f"cardano-node in production: replacement scheduled on {other}" in \
        done.visible_text
    assert "its pods were evicted at" in done.visible_text
    assert running_on(core, ns) == other
    # The second bot only edited: the same message, no second one.
    assert msg.ts in {c.args.get("ts") for c in slack.calls("chat.update", since=mark)}
    assert [c for c in slack.calls("chat.postMessage", since=mark)
            if re.search(failure(node), str(c.args.get("text", "")))] == []
    assert [m.ts for m in failure_messages(slack, node)] == [msg.ts]
    cluster.start_node(node)  # restore_workers starts it if the test ends before this
    back = slack.wait_for_update(done, rf"{re.escape(node)} is Ready again", timeout=60)
    assert back.ts == msg.ts
    assert [m.ts for m in failure_messages(slack, node)] == [msg.ts]
    wait_until(lambda: second.store.open_node_threads() == [], 30, "the story closed")


@pytest.mark.usefixtures("restore_workers")
def test_cordon_from_the_failure_message_is_a_gated_request_in_its_thread(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
        cluster: Cluster) -> None:
    _bot, slack, _ns, node, _other = production_pod(make_bot, apps, core, with_channel)
    cluster.stop_node(node)
    msg = slack.wait_for_message(failure(node), channel="C1", timeout=90)
    assert {ACTION_NODE_CORDON, ACTION_NODE_DRAIN} <= set(msg.action_ids)
    assert {b["value"] for b in msg.buttons} == {node}

    # Someone without the failover action is refused; nothing is requested.
    mark = slack.mark()
    slack.click(ACTION_NODE_CORDON, user="U4", message=msg)
    slack.wait_for_ephemeral(r"Denied: .*failover", user="U4", since=mark)
    assert [m for m in slack.messages("C1", since=mark) if m.is_reply] == []

    slack.click(ACTION_NODE_CORDON, user="U1", message=msg)
    request = slack.wait_for_message(rf"Cordon {re.escape(node)}: no new pods",
                                     channel="C1", thread_ts=msg.ts, timeout=30)
    assert request.thread_ts == msg.ts and request.is_reply
    assert not core.read_node(node).spec.unschedulable  # nothing before the gate says so
    confirmed = confirm_and_refuse_self_approval(slack, request)
    assert not core.read_node(node).spec.unschedulable  # production: another person approves
    slack.click(ACTION_APPROVE, user="U2", message=confirmed)
    slack.wait_for_update(confirmed, r"succeeded", timeout=60)
    assert core.read_node(node).spec.unschedulable is True
    shown = slack.wait_for_update(msg, rf"{re.escape(node)} is cordoned", timeout=30)
    assert ACTION_NODE_CORDON not in shown.action_ids


def confirm_and_refuse_self_approval(slack: SlackStandin, request: Message) -> Message:
    """U1 confirms ``request`` (a production request: it then waits for an approval), and U1's
    own approval is refused; the request, still waiting for another person's approval."""
    slack.click(ACTION_CONFIRM, user="U1", message=request)
    confirmed = slack.wait_for_update(request, r"confirmed", timeout=30)
    assert ACTION_APPROVE in confirmed.action_ids, confirmed.visible_text
    mark = slack.mark()
    slack.click(ACTION_APPROVE, user="U1", message=confirmed)
    slack.wait_for_ephemeral(r"cannot approve or reject your own", user="U1", since=mark)
    still = slack.message(request.channel, request.ts)
    assert ACTION_APPROVE in still.action_ids, still.visible_text
    return still


def offers(action_id: str) -> Callable[[Message], bool]:
    """A matcher: the node-failure message offers the button ``action_id``."""
    return lambda m: action_id in m.action_ids


@pytest.mark.usefixtures("restore_workers")
def test_out_of_service_and_back_from_the_failure_message_through_the_gate(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
        cluster: Cluster) -> None:
    _bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_channel)
    (old,) = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
    cluster.stop_node(node)
    msg = slack.wait_for_message(failure(node), channel="C1", timeout=90)
    # Offered once the node's pods were evicted and it is still down.
    offered = slack.wait_for_update(msg, offers(ACTION_NODE_OUT_OF_SERVICE), timeout=120)
    assert cluster.node_ready(node) == "Unknown"
    stuck = pod(core, ns, old)
    assert stuck is not None and stuck.metadata.deletion_timestamp is not None  # Terminating

    mark = slack.mark()
    slack.click(ACTION_NODE_OUT_OF_SERVICE, user="U1", message=offered)
    request = slack.wait_for_message(rf"Mark {re.escape(node)} out of service: add the taint",
                                     channel="C1", thread_ts=msg.ts, since=mark, timeout=30)
    assert request.is_reply
    assert f"stuck Terminating: {ns}/{old} (cardano-node in production)" in request.visible_text
    confirmed = confirm_and_refuse_self_approval(slack, request)
    assert marked(core) == [] and pod(core, ns, old) is not None  # nothing before U2 approves
    slack.click(ACTION_APPROVE, user="U2", message=confirmed)
    done = slack.wait_for_update(confirmed, r"succeeded|failed", timeout=150)
    assert "succeeded" in done.visible_text, done.visible_text
    assert marked(core) == [node]
    # The pod garbage collector force-deletes the pod left on the out-of-service node.
    wait_until(lambda: pod(core, ns, old) is None, 60, f"{ns}/{old} force-deleted")
    assert running_on(core, ns) == other

    back = slack.wait_for_update(offered, offers(ACTION_NODE_IN_SERVICE), timeout=30)
    assert f"{node} is marked out of service ({OUT_OF_SERVICE})" in back.visible_text
    assert ACTION_NODE_OUT_OF_SERVICE not in back.action_ids
    mark = slack.mark()
    slack.click(ACTION_NODE_IN_SERVICE, user="U1", message=back)
    request = slack.wait_for_message(rf"Back in service {re.escape(node)}: remove the taint",
                                     channel="C1", thread_ts=msg.ts, since=mark, timeout=30)
    assert request.is_reply
    confirmed = confirm_and_refuse_self_approval(slack, request)
    assert marked(core) == [node]  # production: not yet approved
    slack.click(ACTION_APPROVE, user="U2", message=confirmed)
    slack.wait_for_update(confirmed, rf"{re.escape(node)} is back in service", timeout=60)
    assert marked(core) == []
    # The node is still down: the message offers marking it out of service again.
    again = slack.wait_for_update(back, offers(ACTION_NODE_OUT_OF_SERVICE), timeout=30)
    assert ACTION_NODE_IN_SERVICE not in again.action_ids


@pytest.mark.usefixtures("restore_workers")
def test_a_failure_during_a_long_slack_outage_is_posted_once_slack_is_back(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api, cluster: Cluster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox gives up on the post (after 2 s here, 15 min in production); once Slack
    answers again, the sweep sends the message, showing where the failover is by then. The
    e2e bots run no sweeper thread: the test sweeps, as `deckhand run`'s sweeper would."""
    monkeypatch.setattr(node_threads, "RESEND_SECONDS", 1.0)
    bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_channel)
    threads = bot.pipeline.node_threads
    assert threads is not None
    bot.pipeline.outbox._give_up_after = 2.0
    slack.go_offline()
    try:
        cluster.stop_node(node)
        wait_until(lambda: bot.store.latest_node_thread(node) is not None, 90,
                   "the failure recorded")
        wait_until(lambda: running_on(core, ns) == other, 90, "the replacement Running")

        def completed() -> bool:
            row = bot.store.latest_node_thread(node)
            return row is not None and "cardano-node in production" in row.story["ready_at"]

        wait_until(completed, 60, "the failover completed in the stored story")
        # Nothing changes any more: only the sweep's resend can bring the message to Slack.
        wait_until(lambda: threads._unsent and not any(
            t.posting for t in list(threads._unsent.values())), 60,
            "the outbox to give up on the latest post")
        assert failure_messages(slack, node) == []
    finally:
        slack.go_online()
    bot.pipeline.sweep()  # what `deckhand run`'s sweeper does every 5 s
    msg = slack.wait_for_message(failure(node), channel="C1", timeout=60)
    wait_until(lambda: re.search(r"failover completed in \d+ s",
                                 slack.message("C1", msg.ts).visible_text), 60,
               "the message to show the completed failover")
    wait_until(lambda: (bot.store.latest_node_thread(node) or pytest.fail()).ts == msg.ts, 30,
               "the message's ts in the store")
    assert [m.ts for m in failure_messages(slack, node)] == [msg.ts]
