"""End-to-end alert threads: the real Alertmanager in front of the bot's webhook, the Slack
stand-in behind it, the real cluster under the buttons.

Alerts are posted to Alertmanager's v2 API as Prometheus would; Alertmanager groups them and
calls the bot's webhook with its bearer token; what the tests check is what Slack shows, what
the cluster runs and what Alertmanager holds (silences).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.app import start_webhook
from deckhand.bot.http_server import HttpServer
from tests.cluster.alertmanager import Alertmanager, run_alertmanager
from tests.cluster.cluster import free_port
from tests.e2e.conftest import Bot
from tests.e2e.test_pipeline import IMAGE_A, image, rolled_out, seed
from tests.slack.model import Message
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

TOKEN = "am-to-deckhand-token"
BROKEN = "ghcr.io/intersectmbo/cardano-node:broken"


class AlertWorld:
    """Alertmanager plus a bot whose webhook it calls; ``restart()`` replaces the bot."""

    def __init__(self, make_bot: Callable[..., Bot], tmp_path: Path, mode: str,
                 repeat_interval: str = "1h") -> None:
        self.make_bot = make_bot
        self.mode = mode
        self.port = free_port()
        self.database = tmp_path / "alerts.db"
        self._am = run_alertmanager(tmp_path / "am", f"http://127.0.0.1:{self.port}/alerts",
                                    token=TOKEN, repeat_interval=repeat_interval)
        self.am: Alertmanager = self._am.__enter__()
        self.webhook: HttpServer | None = None
        self.bot = self._start()

    def _start(self) -> Bot:
        def route(cfg: dict[str, Any]) -> None:
            cfg["alerts"] = {"channels": {"production": "C1", "staging": "C1"}}
            cfg["rbac"]["roles"]["deployer"].append("silence")

        bot = self.make_bot(self.mode, database=self.database, config=route,
                            alerts_port=self.port, alerts_host="127.0.0.1", alerts_token=TOKEN,
                            alertmanager_url=self.am.url)
        self.webhook = start_webhook(bot.settings, bot.pipeline)
        assert self.webhook is not None
        return bot

    def restart(self) -> None:
        self.stop_bot()
        self.bot = self._start()

    def stop_bot(self) -> None:
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None
        self.bot.stop()

    def close(self) -> None:
        self.stop_bot()
        self._am.__exit__(None, None, None)

    def fire(self, ns: str, *, pod: str = "cardano-node-0", ends: datetime | None = None,
             name: str = "CardanoNodeRestarting") -> None:
        alert: dict[str, Any] = {
            "labels": {"alertname": name, "namespace": ns, "deployment": "cardano-node",
                       "pod": pod, "severity": "warning"},
            "annotations": {"summary": "cardano-node keeps restarting",
                            "description": f"{pod} restarted 3 times in 10 minutes"},
            "generatorURL": "http://prometheus.invalid/graph?g0.expr=restarts",
            "startsAt": _iso(datetime.now(UTC) - timedelta(minutes=5)),
        }
        if ends is not None:
            alert["endsAt"] = _iso(ends)
        self.am.post_alerts([alert])

    def resolve(self, ns: str, *, pod: str = "cardano-node-0",
                name: str = "CardanoNodeRestarting") -> None:
        self.fire(ns, pod=pod, name=name, ends=datetime.now(UTC) - timedelta(seconds=1))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def alert_world(make_bot: Callable[..., Bot], tmp_path: Path
                ) -> Iterator[Callable[..., AlertWorld]]:
    made: list[AlertWorld] = []

    def make(mode: str = "socket", **kwargs: Any) -> AlertWorld:
        made.append(AlertWorld(make_bot, tmp_path, mode, **kwargs))
        return made[-1]

    yield make
    for world in made:
        world.close()


def roots(bot: Bot, pattern: str) -> list[Message]:
    return [m for m in bot.standin.messages(channel="C1")
            if m.thread_ts in (None, m.ts) and re.search(pattern, m.visible_text)]


def thread(bot: Bot, root: Message) -> list[Message]:
    return [m for m in bot.standin.thread("C1", root.ts) if m.ts != root.ts]


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_firing_repeat_and_resolve_in_one_thread(alert_world: Callable[..., AlertWorld],
                                                 mode: str) -> None:
    world = alert_world(mode, repeat_interval="2s")
    bot = world.bot
    ns = bot.namespaces["production"]
    world.fire(ns)
    root = bot.standin.wait_for_message(r"FIRING.*CardanoNodeRestarting", channel="C1",
                                        timeout=30)
    text = root.visible_text
    for needle in ("warning", "production", "cardano-node", "keeps restarting",
                   "restarted 3 times", "prometheus.invalid", world.am.url):
        assert needle in text, needle
    assert {"deckhand_alert_rollback", "deckhand_alert_restart", "deckhand_alert_status",
            "deckhand_alert_silence_1"} <= set(root.action_ids)

    # Alertmanager repeats the notification (repeat_interval 2 s): the root is edited, never
    # posted again, and nothing is said in the thread.
    wait_until(lambda: len(bot.standin.message("C1", root.ts).versions) >= 2, 30,
               "a repeat notification edits the root")
    # A new alert joining the group is a thread reply.
    world.fire(ns, pod="cardano-node-1")
    joined = bot.standin.wait_for_message(r"1 new alert", channel="C1", thread_ts=root.ts,
                                          timeout=30)
    assert "cardano-node-1" in joined.visible_text

    world.resolve(ns)
    world.resolve(ns, pod="cardano-node-1")
    bot.standin.wait_for_message(r"Resolved after", channel="C1", thread_ts=root.ts, timeout=30)
    resolved = bot.standin.message("C1", root.ts)
    assert "RESOLVED" in resolved.visible_text and not resolved.action_ids
    assert len(roots(bot, "CardanoNodeRestarting")) == 1
    replies = [m.visible_text for m in thread(bot, root)]
    assert len(replies) == len(set(replies)), replies  # nothing shown twice


def test_a_restart_between_firing_and_resolved_resolves_the_same_thread(
        alert_world: Callable[..., AlertWorld]) -> None:
    world = alert_world("socket")
    ns = world.bot.namespaces["staging"]
    world.fire(ns)
    root = world.bot.standin.wait_for_message(r"FIRING.*CardanoNodeRestarting", channel="C1",
                                              timeout=30)
    world.restart()
    world.resolve(ns)
    world.bot.standin.wait_for_message(r"Resolved after", channel="C1", thread_ts=root.ts,
                                       timeout=30)
    assert "RESOLVED" in world.bot.standin.message("C1", root.ts).visible_text
    assert len(roots(world.bot, "CardanoNodeRestarting")) == 1


def test_roll_back_from_an_alert_thread_goes_through_confirm_and_approval(
        alert_world: Callable[..., AlertWorld], apps: client.AppsV1Api,
        core: client.CoreV1Api) -> None:
    world = alert_world("socket")
    bot = world.bot
    slack = bot.standin
    ns = bot.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A])
    apps.patch_namespaced_deployment("cardano-node", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "cardano-node", "image": BROKEN}]}}}})
    world.fire(ns, name="CardanoNodeRolloutStuck")
    root = slack.wait_for_message(r"FIRING.*CardanoNodeRolloutStuck", channel="C1", timeout=30)

    slack.click("deckhand_alert_rollback", user="U4", message=root)  # no rights
    slack.wait_for_ephemeral(r"Denied", user="U4")
    slack.click("deckhand_alert_rollback", user="U1", message=root)
    msg = slack.wait_for_message(r"/rollback\* cardano-node in \*production\*", channel="C1",
                                 thread_ts=root.ts, timeout=30)
    assert IMAGE_A in msg.visible_text
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    assert image(apps, ns) == BROKEN  # production needs another person's approval
    slack.click("deckhand_approve", user="U2", message=confirmed)
    slack.wait_for_update(confirmed, r"succeeded", timeout=60)
    assert image(apps, ns) == IMAGE_A
    wait_until(lambda: rolled_out(apps, ns, "3"), 30, "the rollback's revision rolled out")

    slack.click("deckhand_alert_status", user="U1", message=root)
    status = slack.wait_for_ephemeral(r"cardano-node", user="U1")
    assert status.visible_to == "U1"


def test_silence_and_unsilence_through_alertmanager(alert_world: Callable[..., AlertWorld]
                                                    ) -> None:
    world = alert_world("socket")
    bot = world.bot
    slack = bot.standin
    ns = bot.namespaces["staging"]
    world.fire(ns)
    root = slack.wait_for_message(r"FIRING.*CardanoNodeRestarting", channel="C1", timeout=30)

    slack.click("deckhand_alert_silence_4", user="U4", message=root)  # no `silence` right
    slack.wait_for_ephemeral(r"Denied", user="U4")
    assert world.am.silences() == []

    slack.click("deckhand_alert_silence_4", user="U1", message=root)
    said = slack.wait_for_message(r"Silenced by <@U1> until .*request", channel="C1",
                                  thread_ts=root.ts, timeout=30)
    [silence] = world.am.silences()
    assert silence["status"]["state"] == "active"
    assert {(m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]} == {
        ("alertname", "CardanoNodeRestarting", False), ("namespace", ns, False),
        ("deployment", "cardano-node", False)}
    assert silence["createdBy"] == "alice (U1)"
    request = re.search(r"request\W+([0-9a-f]{12})", said.visible_text)
    assert request and request.group(1) in silence["comment"]
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert timedelta(hours=3, minutes=55) < ends - datetime.now(UTC) <= timedelta(hours=4)
    wait_until(lambda: "deckhand_alert_unsilence" in slack.message("C1", root.ts).action_ids,
               30, "the root offers Unsilence")

    slack.click("deckhand_alert_unsilence", user="U1", message=slack.message("C1", root.ts))
    slack.wait_for_message(r"Unsilenced by <@U1>", channel="C1", thread_ts=root.ts, timeout=30)
    [expired] = world.am.silences()
    assert expired["status"]["state"] == "expired"
    events = [(e.event, e.user_id) for e in bot.store.audit_since(0) if e.action == "silence"]
    assert events == [("denied", "U4"), ("silenced", "U1"), ("unsilenced", "U1")]
