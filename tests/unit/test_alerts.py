"""Alert threads without Slack: payload validation, routing, and the group -> thread logic
(one root per group even while its post is queued, replies for news only, resolve in place,
continuity through the store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deckhand.bot.alerts.blocks import (
    ACTION_ALERT_RESTART,
    ACTION_ALERT_ROLLBACK,
    ACTION_ALERT_SCALE,
    ACTION_ALERT_SILENCE,
    ACTION_ALERT_STATUS,
    ACTION_ALERT_UNSILENCE,
    alert_news,
    alert_root,
)
from deckhand.bot.alerts.payload import Notification
from deckhand.bot.alerts.routing import GroupView, group_id, route
from deckhand.bot.alerts.threads import AlertThreads
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.slack.blocks import MAX_BLOCKS
from deckhand.bot.slack.outbox import Delivered
from deckhand.bot.store import Store
from deckhand.bot.store.migrations import SCHEMA_VERSION

CONFIG: dict[str, Any] = {
    "slack": {"team_id": "T1"},
    "environments": {"staging": {"namespace": "cardano-staging"},
                     "production": {"namespace": "cardano"}},
    "workloads": {
        "cardano-node": {"manifests": "m", "container": "cardano-node",
                         "environments": ["staging", "production"],
                         "namespaces": {"staging": "cn-stage"}, "replicas": {"min": 0, "max": 1}},
        "relay": {"manifests": "m", "container": "relay", "environments": ["production"],
                  "deployment": "relay-dep", "replicas": {"min": 0, "max": 10}}},
    "rbac": {"roles": {"viewer": ["status"]}},
    "alerts": {"channels": {"production": "CPROD"}, "default_channel": "CALL"},
}


def config() -> DeckhandConfig:
    return DeckhandConfig.model_validate(CONFIG)


def alert(name: str = "CardanoNodeRestarting", status: str = "firing", fp: str = "aaaa",
          starts: str = "2026-01-01T10:00:00Z", ends: str = "0001-01-01T00:00:00Z",
          **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "namespace": "cardano",
                                         "deployment": "cardano-node", "severity": "critical",
                                         **labels},
            "annotations": {"summary": f"{name} summary", "description": f"{name} details"},
            "startsAt": starts, "endsAt": ends, "generatorURL": "http://prom/graph",
            "fingerprint": fp}


def notification(*alerts: dict[str, Any], status: str | None = None,
                 key: str = '{}:{alertname="CardanoNodeRestarting"}') -> Notification:
    status = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    return Notification.model_validate({
        "version": "4", "groupKey": key, "status": status, "receiver": "deckhand",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"],
                        "namespace": alerts[0]["labels"]["namespace"]},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "truncatedAlerts": 0, "alerts": list(alerts)})


@dataclass
class Outbox:
    """Records posts and edits; post callbacks wait in ``pending`` until the test delivers them."""

    posts: list[tuple[str, str, str | None]] = field(default_factory=list)
    edits: list[tuple[str, str, str]] = field(default_factory=list)
    pending: list[Callable[[Delivered], None]] = field(default_factory=list)
    roots: int = 0

    def post(self, channel: str, text: str, blocks: Any = None, *, thread_ts: str | None = None,
             on_done: Callable[[Delivered], None] | None = None) -> None:
        self.posts.append((channel, text, thread_ts))
        if thread_ts is None:
            self.roots += 1
        if on_done is not None:
            self.pending.append(on_done)

    def edit(self, channel: str, ts: str, text: str, blocks: Any = None, *, final: bool = False,
             terminal: bool = False, on_done: Callable[[Delivered], None] | None = None) -> None:
        assert final, "root edits must not be dropped"
        self.edits.append((channel, ts, text))

    def deliver(self, ts: str = "100.1") -> None:
        callbacks, self.pending = self.pending, []
        for done in callbacks:
            done(Delivered(True, ts))


@pytest.fixture
def world(tmp_path: Path) -> tuple[AlertThreads, Outbox, Store]:
    store = Store(tmp_path / "d.db")
    outbox = Outbox()
    return AlertThreads(config(), store, outbox), outbox, store  # type: ignore[arg-type]


def replies(outbox: Outbox) -> list[str]:
    return [text for _, text, thread in outbox.posts if thread is not None]


# -- payload and routing -----------------------------------------------------------------------


def test_a_version_4_payload_is_validated() -> None:
    n = notification(alert())
    assert n.alerts[0].fingerprint == "aaaa"
    assert n.alerts[0].starts_at.year == 2026
    with pytest.raises(ValidationError):
        Notification.model_validate({**n.model_dump(by_alias=True), "version": "3"})
    with pytest.raises(ValidationError):
        Notification.model_validate({**n.model_dump(by_alias=True), "alerts": []})
    with pytest.raises(ValidationError):
        Notification.model_validate({**n.model_dump(by_alias=True), "status": "weird"})


def test_labels_route_to_an_environment_and_a_workload() -> None:
    cfg = config()
    assert route({"namespace": "cardano", "deployment": "cardano-node"}, cfg) == (
        "production", "cardano-node")
    # A workload's own namespace for an environment wins over the environment's default.
    assert route({"namespace": "cn-stage", "app": "cardano-node"}, cfg) == (
        "staging", "cardano-node")
    assert route({"namespace": "cardano", "pod": "relay-dep-5d9c7-x2k4p"}, cfg) == (
        "production", "relay")
    assert route({"namespace": "cardano", "app": "relay-dep"}, cfg) == ("production", "relay")
    assert route({"namespace": "elsewhere", "deployment": "cardano-node"}, cfg) == (
        None, "cardano-node")
    assert route({"namespace": "cardano", "deployment": "unknown"}, cfg) == ("production", None)
    # relay does not run in staging: no workload there.
    assert route({"namespace": "cardano-staging", "deployment": "relay-dep"}, cfg) == (
        "staging", None)


def test_config_refuses_alert_channels_of_unknown_environments() -> None:
    with pytest.raises(ValidationError, match=r"alerts\.channels"):
        DeckhandConfig.model_validate({**CONFIG, "alerts": {"channels": {"nowhere": "C1"}}})


# -- threads -----------------------------------------------------------------------------------


def test_first_notification_posts_one_root_and_records_its_ts(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, store = world
    assert threads.handle(notification(alert()))
    assert outbox.posts == [("CPROD", outbox.posts[0][1], None)]
    assert "firing" in outbox.posts[0][1] and "CardanoNodeRestarting" in outbox.posts[0][1]
    outbox.deliver("100.1")
    key = group_id("deckhand", '{}:{alertname="CardanoNodeRestarting"}')
    group = store.alert_group(key)
    assert group is not None and group.ts == "100.1" and group.channel == "CPROD"
    assert outbox.edits == []  # nothing changed while the root was on its way


def test_resends_while_the_root_is_queued_never_post_a_second_root(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, _ = world
    threads.handle(notification(alert()))
    threads.handle(notification(alert()))  # Alertmanager re-sends before Slack answered
    threads.handle(notification(alert(), alert(fp="bbbb", name="CardanoNodeRestarting")))
    assert outbox.roots == 1 and replies(outbox) == []
    outbox.deliver("100.1")
    # Then: the root is edited to the latest, and the joined alert is a reply in its thread.
    assert outbox.roots == 1
    assert [ts for _, ts, _ in outbox.edits] == ["100.1"]
    assert [(t, thread) for _, t, thread in outbox.posts[1:]] == [
        ("1 new alert(s) in this group", "100.1")]


def test_the_same_notification_twice_changes_nothing_visible(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, _ = world
    threads.handle(notification(alert()))
    outbox.deliver()
    threads.handle(notification(alert()))
    threads.handle(notification(alert()))
    assert outbox.roots == 1 and replies(outbox) == []
    # A repeat edits the root (to the same content), never posts.
    assert len(outbox.edits) == 2 and len({text for *_, text in outbox.edits}) == 1


def test_resolution_edits_the_root_and_says_after_how_long(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, store = world
    threads.handle(notification(alert()))
    outbox.deliver("100.1")
    resolved = alert(status="resolved", ends="2026-01-01T10:12:30Z")
    threads.handle(notification(resolved))
    threads.handle(notification(resolved))  # resent: no second "resolved" reply
    assert outbox.edits[-1][1] == "100.1" and outbox.edits[-1][2].startswith("resolved")
    assert replies(outbox) == ["Resolved after 12 min 30 s (1 alert(s) resolved now)"]
    key = group_id("deckhand", '{}:{alertname="CardanoNodeRestarting"}')
    group = store.alert_group(key)
    assert group is not None and group.status == "resolved"


def test_some_alerts_resolving_in_a_firing_group_is_a_reply(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, _ = world
    threads.handle(notification(alert(), alert(fp="bbbb")))
    outbox.deliver()
    threads.handle(notification(alert(), alert(fp="bbbb", status="resolved",
                                                ends="2026-01-01T10:01:00Z")))
    assert replies(outbox) == ["1 alert(s) resolved: CardanoNodeRestarting"]


def test_a_restart_resolves_the_same_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    outbox = Outbox()
    AlertThreads(config(), store, outbox).handle(notification(alert()))  # type: ignore[arg-type]
    outbox.deliver("100.1")
    store.close()

    store = Store(tmp_path / "d.db")
    assert store.schema_version == SCHEMA_VERSION
    after = Outbox()
    threads = AlertThreads(config(), store, after)  # type: ignore[arg-type]
    threads.resume()
    assert after.posts == []  # the root is known: nothing to re-post
    threads.handle(notification(alert(status="resolved", ends="2026-01-01T10:05:00Z")))
    assert after.roots == 0
    assert after.edits[0][1] == "100.1"
    assert [thread for _, _, thread in after.posts] == ["100.1"]


def test_a_root_lost_to_a_restart_is_posted_again_at_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    outbox = Outbox()
    AlertThreads(config(), store, outbox).handle(notification(alert()))  # type: ignore[arg-type]
    store.close()  # stopped before Slack answered

    store = Store(tmp_path / "d.db")
    after = Outbox()
    AlertThreads(config(), store, after).resume()  # type: ignore[arg-type]
    assert after.roots == 1
    after.deliver("200.2")
    key = group_id("deckhand", '{}:{alertname="CardanoNodeRestarting"}')
    assert (store.alert_group(key) or pytest.fail()).ts == "200.2"


def test_resolved_groups_are_forgotten_after_a_while_firing_ones_never(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "d.db", clock=lambda: now[0])
    outbox = Outbox()
    threads = AlertThreads(config(), store, outbox)  # type: ignore[arg-type]
    threads.handle(notification(alert()))
    threads.handle(notification(alert(name="Other", fp="cccc"), key="other"))
    outbox.deliver("100.1")
    threads.handle(notification(alert(status="resolved", ends="2026-01-01T10:05:00Z")))
    now[0] = 5000.0
    assert store.prune_alert_groups(older_than=4000.0) == 1
    assert store.alert_group(group_id("deckhand", "other")) is not None
    # The same group firing again now starts a new thread.
    threads.handle(notification(alert()))
    assert outbox.roots == 3


def test_alerts_without_a_channel_are_dropped(tmp_path: Path) -> None:
    data = {**CONFIG, "alerts": {"channels": {"production": "CPROD"}}}
    outbox = Outbox()
    threads = AlertThreads(DeckhandConfig.model_validate(data), Store(tmp_path / "d.db"),
                           outbox)  # type: ignore[arg-type]
    assert not threads.handle(notification(alert(namespace="cardano-staging")))
    assert outbox.posts == []
    # The default channel takes unmapped environments.
    outbox2 = Outbox()
    threads2 = AlertThreads(config(), Store(tmp_path / "e.db"), outbox2)  # type: ignore[arg-type]
    assert threads2.handle(notification(alert(namespace="cardano-staging")))
    assert outbox2.posts[0][0] == "CALL"


# -- rendering -----------------------------------------------------------------------------------


def _texts(rendered: list[dict[str, Any]]) -> str:
    return str(rendered)


def test_the_root_shows_what_the_issue_asks_and_buttons_only_when_actionable() -> None:
    view = GroupView.model_validate({
        "key": "k1", "status": "firing", "receiver": "deckhand",
        "group_labels": {"alertname": "CardanoNodeRestarting", "namespace": "cardano"},
        "external_url": "http://am:9093", "environment": "production",
        "workload": "cardano-node", "scale_options": [0, 1],
        "alerts": [{"fingerprint": "a", "status": "firing", "name": "CardanoNodeRestarting",
                    "severity": "critical", "summary": "restarting", "description": "3 restarts",
                    "starts_at": 1767261600.0, "ends_at": None,
                    "generator_url": "http://prom/graph"}]})
    text, rendered = alert_root(view)
    dumped = _texts(rendered)
    for needle in ("FIRING", "CardanoNodeRestarting", "critical", "production", "cardano-node",
                   "restarting", "3 restarts", "<!date^1767261600", "http://prom/graph",
                   "http://am:9093/#/alerts?filter="):
        assert needle in dumped, needle
    ids = [e["action_id"] for b in rendered if b["type"] == "actions" for e in b["elements"]]
    assert ids == [ACTION_ALERT_ROLLBACK, ACTION_ALERT_RESTART,
                   f"{ACTION_ALERT_SCALE}_0", f"{ACTION_ALERT_SCALE}_1",
                   ACTION_ALERT_STATUS, f"{ACTION_ALERT_SILENCE}_1",
                   f"{ACTION_ALERT_SILENCE}_4", f"{ACTION_ALERT_SILENCE}_24"]
    silence = [e for b in rendered if b["type"] == "actions" for e in b["elements"]][-1]
    assert silence["value"] == "k1 24" and silence["confirm"]["confirm"]["text"] == "Silence"

    view.silence = {"id": "s1", "by": "U1", "until": 1767300000.0}
    rendered = alert_root(view)[1]
    assert "Silenced by <@U1>" in _texts(rendered)
    ids = [e["action_id"] for b in rendered if b["type"] == "actions" for e in b["elements"]]
    assert ids[-1] == ACTION_ALERT_UNSILENCE and not any("silence_" in i for i in ids)

    unmapped = view.model_copy(update={"workload": None, "silence": None})
    assert not [b for b in alert_root(unmapped)[1] if b["type"] == "actions"]
    resolved = view.model_copy(update={"status": "resolved", "silence": None})
    assert not [b for b in alert_root(resolved)[1] if b["type"] == "actions"]
    assert text.startswith("firing")


def test_a_huge_group_stays_within_slack_limits() -> None:
    many = [{"fingerprint": f"f{i}", "status": "firing", "name": f"A{i}", "severity": None,
             "summary": "x" * 4000, "description": None, "starts_at": 1.0, "ends_at": None,
             "generator_url": ""} for i in range(300)]
    view = GroupView.model_validate({"key": "k", "status": "firing", "receiver": "r",
                                     "group_labels": {}, "external_url": "", "environment": None,
                                     "workload": None, "alerts": many})
    rendered = alert_root(view)[1]
    assert len(rendered) <= MAX_BLOCKS
    assert "280 more alert(s)" in _texts(rendered)
    text, joined = alert_news(view.alerts, [], None, [])
    assert text == "300 new alert(s) in this group" and len(joined) <= MAX_BLOCKS


def test_news_waits_for_the_reply_in_flight_and_goes_out_merged(
        world: tuple[AlertThreads, Outbox, Store]) -> None:
    threads, outbox, _ = world
    threads.handle(notification(alert()))
    outbox.deliver("100.1")
    threads.handle(notification(alert(), alert(fp="b1")))
    assert replies(outbox) == ["1 new alert(s) in this group"]  # in flight (429, say)
    threads.handle(notification(alert(), alert(fp="b1"), alert(fp="b2")))
    threads.handle(notification(alert(), alert(fp="b1", status="resolved",
                                                ends="2026-01-01T10:03:00Z"),
                                alert(fp="b2"), alert(fp="b3")))
    assert len(replies(outbox)) == 1  # nothing more until the first reply is delivered
    outbox.deliver()
    assert replies(outbox)[1:] == [
        "1 alert(s) resolved: CardanoNodeRestarting · 2 new alert(s) in this group"]
    outbox.deliver()
    threads.handle(notification(*(alert(fp=f, status="resolved", ends="2026-01-01T10:20:00Z")
                                  for f in ("aaaa", "b1", "b2", "b3"))))
    assert replies(outbox)[2:] == ["Resolved after 20 min 0 s (3 alert(s) resolved now)"]
