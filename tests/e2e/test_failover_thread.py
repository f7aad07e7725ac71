"""End-to-end: the node-failure message survives a restart of the bot, and its buttons open
requests through the gate in its thread, through the Slack stand-in against the real cluster.

A node is failed by killing its heartbeat (``cluster.stop_node``); nodes are shared by the
session, so every test starts its node again, and uncordons what it cordoned, in a finally.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot import blocks
from tests.cluster.cluster import Cluster
from tests.e2e.test_failover import production_pod, running_on, uncordon_all, with_failover
from tests.slack.model import Message
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

WORKERS = ("netcup-worker-1", "netcup-worker-2")


def with_channel(cfg: dict[str, Any]) -> None:
    with_failover(cfg)
    cfg["failover"] = {"channel": "C1"}


def failure(node: str) -> str:
    return rf"\*?{re.escape(node)}\*? (stopped answering|turned NotReady)"


def failure_messages(slack: SlackStandin, node: str) -> list[Message]:
    """Top-level messages in C1 about the failure of ``node``."""
    return [m for m in slack.messages("C1") if not m.is_reply
            and re.search(failure(node), m.visible_text)]


def test_a_restart_during_a_failover_continues_the_same_message(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api, cluster: Cluster,
        tmp_path: Path) -> None:
    database = tmp_path / "kept.db"
    bot, slack, ns, node, other = production_pod(make_bot, apps, core, with_channel, database=database)
    cluster.stop_node(node)
    try:
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
    finally:
        cluster.start_node(node)
    back = slack.wait_for_update(done, rf"{re.escape(node)} is Ready again", timeout=60)
    assert back.ts == msg.ts
    assert [m.ts for m in failure_messages(slack, node)] == [msg.ts]
    wait_until(lambda: second.store.open_node_threads() == [], 30, "the story closed")


def test_cordon_from_the_failure_message_is_a_gated_request_in_its_thread(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
        cluster: Cluster) -> None:
    _bot, slack, _ns, node, _other = production_pod(make_bot, apps, core, with_channel)
    cluster.stop_node(node)
    try:
        msg = slack.wait_for_message(failure(node), channel="C1", timeout=90)
        assert {blocks.ACTION_NODE_CORDON, blocks.ACTION_NODE_DRAIN} <= set(msg.action_ids)
        assert {b["value"] for b in msg.buttons} == {node}

        # Someone without the failover action is refused; nothing is requested.
        mark = slack.mark()
        slack.click(blocks.ACTION_NODE_CORDON, user="U4", message=msg)
        slack.wait_for_ephemeral(r"Denied: .*failover", user="U4", since=mark)
        assert [m for m in slack.messages("C1", since=mark) if m.is_reply] == []

        slack.click(blocks.ACTION_NODE_CORDON, user="U1", message=msg)
        request = slack.wait_for_message(rf"Cordon {re.escape(node)}: no new pods",
                                         channel="C1", thread_ts=msg.ts, timeout=30)
        assert request.thread_ts == msg.ts and request.is_reply
        assert not core.read_node(node).spec.unschedulable  # nothing before the gate says so
        slack.click("deckhand_confirm", user="U1", message=request)
        confirmed = slack.wait_for_update(request, r"confirmed|succeeded", timeout=30)
        if "deckhand_approve" in confirmed.action_ids:  # production: another person approves
            slack.click("deckhand_approve", user="U2", message=confirmed)
        slack.wait_for_update(request, r"succeeded", timeout=60)
        assert core.read_node(node).spec.unschedulable is True
        shown = slack.wait_for_update(msg, rf"{re.escape(node)} is cordoned", timeout=30)
        assert blocks.ACTION_NODE_CORDON not in shown.action_ids
    finally:
        cluster.start_node(node)
        uncordon_all(core)
