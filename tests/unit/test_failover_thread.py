"""The node-failure message (bot/failover/threads.py): what the Story says at each step, which
buttons each state offers and what their clicks ask for, and how a restart continues the story
from the store (with an in-memory stand-in for the cache's informers; the real watches are
covered end to end in tests/e2e/test_failover_thread.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deckhand.bot.access.policy import Actor
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.failover.blocks import node_failure
from deckhand.bot.failover.buttons import (
    ACTION_NODE_CORDON,
    ACTION_NODE_DRAIN,
    ACTION_NODE_IN_SERVICE,
    ACTION_NODE_OUT_OF_SERVICE,
    NODE_ACTIONS,
    node_command,
)
from deckhand.bot.failover.story import Story, _clock
from deckhand.bot.failover.threads import RESEND_SECONDS, NodeThreads
from deckhand.bot.intake.clicks import Clicks
from deckhand.bot.intake.pipeline import Pipeline
from deckhand.bot.slack.outbox import Delivered
from deckhand.bot.store import Store
from deckhand.commands import COMMANDS
from tests.waiting import wait_until

T0 = "2026-01-01T10:00:00Z"
T0_EPOCH = 1767261600.0


def story(**changes: Any) -> Story:
    fields: dict[str, Any] = {
        "node": "netcup-worker-1", "since": T0, "stopped_at": 1000.0, "state": "Unknown",
        "workloads": {"p1": "cardano-node in production"}, "toleration": 10}
    return Story(**{**fields, **changes})


def test_first_message_names_the_node_the_workloads_and_the_eviction_time() -> None:
    text = story().text()
    assert text.startswith(f":rotating_light: *netcup-worker-1* stopped answering at "
                           f"{_clock(1000.0)}; it runs cardano-node in production")
    assert f"its pods are evicted at {_clock(1010.0)} (after 10 s)" in text
    assert "failover completed" not in text


def test_not_ready_and_tolerating_forever() -> None:
    s = story(state="False", toleration=None)
    assert "turned NotReady" in s.text() and "evicted" not in s.text()


def test_steps_then_completion_measured_from_the_node_condition() -> None:
    s = story()
    s.evicted_at = 1011.0
    s.stuck["cardano-node in production"] = "0/3 nodes are available"
    assert "cardano-node in production: stuck: 0/3 nodes are available" in s.text()
    s.replacements["cardano-node in production"] = "netcup-worker-2"
    s.ready_at["cardano-node in production"] = 1024.4
    text = s.text()
    assert f"its pods were evicted at {_clock(1011.0)}" in text
    assert "cardano-node in production: replacement scheduled on netcup-worker-2" in text
    assert "stuck" not in text
    assert text.endswith("*failover completed in 24 s*")
    s.back_at = 1100.0
    assert s.text().endswith(f"netcup-worker-1 is Ready again since {_clock(1100.0)}")


def test_completion_waits_for_every_workload() -> None:
    s = story(stopped_at=0.0, workloads={"p": "a in x", "q": "b in x"})
    s.ready_at["a in x"] = 30.0
    assert not s.done() and "completed" not in s.text()
    s.ready_at["b in x"] = 40.0
    assert s.done() and "failover completed in 40 s" in s.text()


def test_a_story_survives_its_json() -> None:
    s = story(evicted_at=1011.0, cordoned=True)
    s.replacements["cardano-node in production"] = "netcup-worker-2"
    assert Story.model_validate_json(s.model_dump_json()) == s


# -- buttons -------------------------------------------------------------------------------------


def buttons(s: Story) -> dict[str, dict[str, Any]]:
    """The message's buttons by label."""
    _, rendered = node_failure(s)
    actions = [b for b in rendered if b["type"] == "actions"]
    assert len(actions) <= 1
    return {e["text"]["text"]: e for a in actions for e in a["elements"]}


def texts(s: Story) -> str:
    _, rendered = node_failure(s)
    return "\n".join(e["text"] for b in rendered for e in
                     ([b["text"]] if b["type"] == "section" else b.get("elements", []))
                     if isinstance(e, dict) and e.get("type") == "mrkdwn")


def test_a_fresh_failure_offers_cordon_and_drain_with_the_node_as_value() -> None:
    shown = buttons(story())
    assert list(shown) == ["Cordon", "Drain"]
    assert shown["Cordon"]["action_id"] == ACTION_NODE_CORDON
    assert shown["Drain"]["action_id"] == ACTION_NODE_DRAIN
    assert {b["value"] for b in shown.values()} == {"netcup-worker-1"}
    assert "powered off" not in texts(story())


def test_a_cordoned_node_is_not_offered_cordon_again() -> None:
    s = story(cordoned=True)
    assert list(buttons(s)) == ["Drain"]
    assert "netcup-worker-1 is cordoned" in s.text()


def test_a_node_that_stays_down_offers_mark_out_of_service_with_the_warning() -> None:
    s = story(evicted_at=1011.0)
    shown = buttons(s)
    assert list(shown) == ["Cordon", "Mark out of service"]
    oos = shown["Mark out of service"]
    assert oos["action_id"] == ACTION_NODE_OUT_OF_SERVICE and oos["style"] == "danger"
    assert "really powered off" in oos["confirm"]["text"]["text"]
    assert ":warning: *Mark out of service*: Only safe when the node is really powered off" in \
        texts(s)


def test_an_out_of_service_node_offers_back_in_service_instead() -> None:
    s = story(evicted_at=1011.0, cordoned=True, out_of_service=True)
    shown = buttons(s)
    assert list(shown) == ["Back in service"]
    assert shown["Back in service"]["action_id"] == ACTION_NODE_IN_SERVICE
    assert "marked out of service (node.kubernetes.io/out-of-service)" in s.text()
    assert "powered off" not in texts(s)


def test_a_node_back_keeps_only_back_in_service_while_tainted() -> None:
    assert buttons(story(evicted_at=1011.0, back_at=1100.0)) == {}
    assert list(buttons(story(evicted_at=1011.0, back_at=1100.0, out_of_service=True))) == [
        "Back in service"]


def test_each_button_asks_for_its_command_on_the_node() -> None:
    assert node_command(ACTION_NODE_CORDON, "w1") == ("cordon", "w1")
    assert node_command(ACTION_NODE_DRAIN, "w1") == ("failover", "drill w1")
    assert node_command(ACTION_NODE_OUT_OF_SERVICE, "w1") == (
        "failover", "out-of-service w1")
    assert node_command(ACTION_NODE_IN_SERVICE, "w1") == ("failover", "in-service w1")
    assert {a for a in NODE_ACTIONS} == {ACTION_NODE_CORDON,
                                                ACTION_NODE_DRAIN,
                                                ACTION_NODE_OUT_OF_SERVICE,
                                                ACTION_NODE_IN_SERVICE}


@pytest.mark.parametrize("action", NODE_ACTIONS)
def test_each_button_command_is_one_its_command_accepts(action: str) -> None:
    verb, text = node_command(action, "w1")
    args = COMMANDS[verb].parse(text, DeckhandConfig.model_validate(CONFIG))
    dumped = args.model_dump()
    assert (dumped["node"], dumped["rbac_action"]) == ("w1", "failover")


@dataclass
class Reply:
    said: list[str] = field(default_factory=list)

    def private(self, text: str, blocks_: Any = None) -> None:
        self.said.append(text)


class Known:
    def thread_of(self, node: str) -> tuple[str, str | None] | None:
        return ("COPS", "111.222") if node == "w1" else None


@pytest.mark.parametrize("action, verb, text", [
    (ACTION_NODE_CORDON, "cordon", "w1"),
    (ACTION_NODE_DRAIN, "failover", "drill w1"),
    (ACTION_NODE_OUT_OF_SERVICE, "failover", "out-of-service w1"),
    (ACTION_NODE_IN_SERVICE, "failover", "in-service w1"),
])
def test_a_click_is_the_command_typed_in_the_failure_thread(action: str, verb: str,
                                                            text: str) -> None:
    pipeline, asked = routed()
    reply = Reply()
    pipeline.clicks.node(action, "w1", ACTOR, reply, "999.1")  # type: ignore[arg-type]
    assert asked == [(verb, text, "111.222")] and reply.said == []


@pytest.mark.parametrize("node", ["w9", "", "w1 w2", "w1\n"])
def test_a_click_on_an_unknown_node_or_story_does_nothing(node: str) -> None:
    pipeline, asked = routed()
    reply = Reply()
    pipeline.clicks.node(ACTION_NODE_CORDON, node, ACTOR, reply,  # type: ignore[arg-type]
                         "999.1")
    assert asked == []
    assert len(reply.said) == 1 and "no failure story of node" in reply.said[0]
    assert "nothing was done" in reply.said[0]


ACTOR = Actor("U1", "T1", "COPS")


def routed() -> tuple[Pipeline, list[tuple[str, str, str | None]]]:
    """A pipeline whose commands are recorded instead of run (only the click routing is real)."""
    asked: list[tuple[str, str, str | None]] = []
    pipeline = Pipeline.__new__(Pipeline)
    pipeline.node_threads = Known()  # type: ignore[assignment]

    def command(verb: str, text: str, actor: Actor, reply: Any,
                thread_ts: str | None = None) -> str:
        asked.append((verb, text, thread_ts))
        return "requested"

    pipeline.request = command  # type: ignore[method-assign]
    pipeline.clicks = Clicks(pipeline)
    return pipeline, asked


# -- continuity through the store ------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "slack": {"team_id": "T1"},
    "environments": {"production": {"namespace": "cardano"}},
    "workloads": {"cardano-node": {"manifests": "m", "container": "cardano-node",
                                   "environments": ["production"],
                                   "replicas": {"min": 0, "max": 1}}},
    "rbac": {"roles": {"viewer": ["status"]}},
}


class Informer:
    def __init__(self) -> None:
        self.synced = threading.Event()
        self.synced.set()
        self.unreachable_since: float | None = None
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def subscribe(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        self.listeners.append(listener)


class Cache:
    """What NodeThreads reads of the cluster cache: informers to subscribe to, and objects."""

    def __init__(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        self.objects = {"Node": nodes, "Pod": pods, "Deployment": [{
            "metadata": {"name": "cardano-node", "namespace": "cardano"},
            "spec": {"selector": {"matchLabels": {"app": "cardano-node"}}}}]}
        self.informers: dict[str, Informer] = {}

    def informer(self, context: str | None, namespace: str | None, kind: str) -> Informer:
        return self.informers.setdefault(kind, Informer())

    def list(self, context: str | None, namespace: str | None, kind: str) -> list[Any]:
        return list(self.objects[kind])

    def get(self, context: str | None, namespace: str | None, kind: str,
            name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects[kind] if o["metadata"]["name"] == name), None)

    def tell(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        for listener in self.informers[kind].listeners:
            listener(event, obj)


def body(text: str, rendered: list[dict[str, Any]] | None) -> str:
    """What the message shows: its first section (the story), not the notification text."""
    return str(rendered[0]["text"]["text"]) if rendered else text


@dataclass
class Outbox:
    """Records what is posted and edited; posts complete when the test delivers them."""

    posts: list[str] = field(default_factory=list)
    edits: list[tuple[str, str]] = field(default_factory=list)
    pending: list[Callable[[Delivered], None]] = field(default_factory=list)
    edited: list[Callable[[Delivered], None]] = field(default_factory=list)

    def post(self, channel: str, text: str, blocks: Any = None, *, thread_ts: str | None = None,
             on_done: Callable[[Delivered], None] | None = None) -> None:
        self.posts.append(body(text, blocks))
        if on_done is not None:
            self.pending.append(on_done)

    def edit(self, channel: str, ts: str, text: str, blocks: Any = None, *, final: bool = False,
             terminal: bool = False, on_done: Callable[[Delivered], None] | None = None) -> None:
        assert final
        self.edits.append((ts, body(text, blocks)))
        if on_done is not None:
            self.edited.append(on_done)

    def deliver(self, ts: str) -> None:
        callbacks, self.pending = self.pending, []
        for done in callbacks:
            done(Delivered(True, ts))

    def give_up(self) -> None:
        """The outbox's verdict after a Slack outage longer than its give_up_after."""
        callbacks, self.pending = self.pending, []
        for done in callbacks:
            done(Delivered(False, error="unreachable (ConnectionRefusedError)"))

    def answer_edits(self, ok: bool) -> None:
        callbacks, self.edited = self.edited, []
        for done in callbacks:
            done(Delivered(ok, error=None if ok else "http_503"))


def node(ready: str, since: str = T0, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "w1"}, "spec": spec, "status": {"conditions": [
        {"type": "Ready", "status": ready, "lastTransitionTime": since}]}}


def pod(name: str, where: str | None, deleting: bool = False,
        ready: str | None = None, created: str = "2026-01-01T10:00:12Z") -> dict[str, Any]:
    """A pod of cardano-node; created (by default) after the failure at T0, as a replacement
    is (the failed node's own pods are known by name, whatever their age)."""
    meta: dict[str, Any] = {"name": name, "namespace": "cardano", "creationTimestamp": created,
                            "labels": {"app": "cardano-node"}}
    if deleting:
        # Evicted at 10:00:12: the timestamp is the end of its grace period.
        meta["deletionTimestamp"] = "2026-01-01T10:00:42Z"
        meta["deletionGracePeriodSeconds"] = 30
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready \
        else []
    return {"metadata": meta, "spec": {"nodeName": where} if where else {},
            "status": {"conditions": conditions}}


def started(store: Store, cache: Cache) -> tuple[NodeThreads, Outbox]:
    outbox = Outbox()
    threads = NodeThreads(DeckhandConfig.model_validate(CONFIG), cache,  # type: ignore[arg-type]
                          outbox, store, "COPS")  # type: ignore[arg-type]
    threads.start()
    wait_until(lambda: threads._caught_up, 10, "the first picture compared")
    return threads, outbox


def test_a_restart_continues_the_same_message_and_the_node_back_ends_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    assert outbox.posts == []
    cache.tell("Node", "MODIFIED", node("Unknown"))
    assert len(outbox.posts) == 1 and "*w1* stopped answering" in outbox.posts[0]
    cache.tell("Pod", "MODIFIED", pod("old", "w1", deleting=True))  # evicted before the ts
    outbox.deliver("100.1")
    assert outbox.edits[-1][0] == "100.1"
    assert f"its pods were evicted at {_clock(T0_EPOCH + 12)}" in outbox.edits[-1][1]
    threads.stop()

    # Restarted while the node is down: the replacement became Ready meanwhile.
    cache.objects["Node"] = [node("Unknown")]
    cache.objects["Pod"] = [pod("old", "w1", deleting=True),
                            pod("new", "w2", ready="2026-01-01T10:00:30Z")]
    threads, after = started(store, cache)
    assert after.posts == []
    assert after.edits[-1][0] == "100.1"
    assert "failover completed in 30 s" in after.edits[-1][1]
    cache.tell("Node", "MODIFIED", node("True", since="2026-01-01T10:05:00Z"))
    assert after.posts == [] and "w1 is Ready again" in after.edits[-1][1]
    assert store.open_node_threads() == []
    threads.stop()

    # A start after the end: nothing to continue, nothing posted again.
    cache.objects["Node"] = [node("True", since="2026-01-01T10:05:00Z")]
    threads, third = started(store, cache)
    assert (third.posts, third.edits) == ([], [])
    threads.stop()


def test_a_node_found_down_at_start_gets_one_message_per_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("Unknown")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    assert len(outbox.posts) == 1
    # Stopped before Slack answered: the next start posts once more (at-least-once) ...
    threads.stop()
    threads, again = started(store, cache)
    assert len(again.posts) == 1
    again.deliver("200.2")
    threads.stop()
    row = store.open_node_threads()[0]
    assert (row.node, row.since, row.ts) == ("w1", T0, "200.2")
    # ... and once the ts is known, only edits.
    threads, third = started(store, cache)
    assert third.posts == [] and [ts for ts, _ in third.edits] == ["200.2"]
    threads.stop()


def test_a_failure_already_told_and_ended_is_not_told_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    s = story(node="w1")
    assert store.open_node_thread("w1", T0, "COPS", s.model_dump())
    assert not store.open_node_thread("w1", T0, "COPS", s.model_dump())
    store.save_node_story("w1", T0, {**s.model_dump(), "back_at": T0_EPOCH}, closed=True)
    cache = Cache([node("Unknown")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    assert (outbox.posts, outbox.edits) == ([], [])
    threads.stop()


def test_cordon_and_the_taint_show_on_the_message(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("Unknown")], [pod("old", "w1", deleting=True)])
    threads, outbox = started(store, cache)
    outbox.deliver("300.3")
    cache.tell("Node", "MODIFIED", node("Unknown", unschedulable=True, taints=[
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown",
         "effect": "NoExecute"}]))
    assert "w1 is marked out of service" in outbox.edits[-1][1]
    stored = Story.model_validate(store.open_node_threads()[0].story)
    assert stored.cordoned and stored.out_of_service
    assert stored.offers() == [ACTION_NODE_IN_SERVICE]
    assert threads.thread_of("w1") == ("COPS", "300.3")
    assert threads.thread_of("w9") is None
    threads.stop()


# -- review findings -------------------------------------------------------------------------------


def stored(store: Store) -> Story:
    """The one open story."""
    rows = store.open_node_threads()
    assert len(rows) == 1
    return Story.model_validate(rows[0].story)


def test_only_a_node_that_stopped_answering_is_offered_out_of_service() -> None:
    # NotReady ("False"): its kubelet reports, so the node runs: never out of service.
    assert ACTION_NODE_OUT_OF_SERVICE not in story(state="False",
                                                           evicted_at=1011.0).offers()
    assert ACTION_NODE_OUT_OF_SERVICE in story(state="Unknown", evicted_at=1011.0).offers()
    # What counts is the state now, not at the start of the failure.
    assert ACTION_NODE_OUT_OF_SERVICE in story(
        state="False", current="Unknown", current_since=T0, evicted_at=1011.0).offers()
    assert ACTION_NODE_OUT_OF_SERVICE not in story(
        state="Unknown", current="False", current_since=T0, evicted_at=1011.0).offers()


def test_the_story_follows_the_ready_state_while_the_node_stays_down(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("False"))
    cache.tell("Pod", "MODIFIED", pod("old", "w1", deleting=True))
    outbox.deliver("1.1")
    assert "*w1* turned NotReady" in outbox.edits[-1][1]
    assert ACTION_NODE_OUT_OF_SERVICE not in stored(store).offers()
    # The kubelet stops reporting (the node is off): its condition's status and time change.
    cache.tell("Node", "MODIFIED", node("Unknown", since="2026-01-01T10:01:00Z"))
    s = stored(store)
    assert (s.state, s.ready_now(), s.transition()) == ("False", "Unknown",
                                                         "2026-01-01T10:01:00Z")
    assert f"it stopped answering at {_clock(T0_EPOCH + 60)}" in outbox.edits[-1][1]
    assert ACTION_NODE_OUT_OF_SERVICE in s.offers()
    threads.stop()
    # A restart sees the same failure (no new message, the same one goes on).
    cache.objects["Node"] = [node("Unknown", since="2026-01-01T10:01:00Z")]
    cache.objects["Pod"] = []
    threads, after = started(store, cache)
    assert after.posts == [] and {ts for ts, _ in after.edits} == {"1.1"}
    assert "came back" not in after.edits[-1][1]
    threads.stop()


def test_a_restart_without_the_pods_picture_infers_no_eviction(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    outbox.deliver("1.1")
    threads.stop()
    # Restarted while the API server cannot be reached: nothing lists within the deadline.
    monkeypatch.setattr("deckhand.bot.failover.threads.CATCH_UP_SECONDS", 0)
    cache.objects["Node"], cache.objects["Pod"] = [], []
    for informer in cache.informers.values():
        informer.synced.clear()
    threads, after = started(store, cache)
    s = stored(store)
    assert s.evicted_at is None and not s.evicted_unseen
    assert "were evicted" not in after.edits[-1][1]
    # Listed, but the API server stopped answering since: still no inference.
    cache.informers["Pod"].unreachable_since = 5.0
    cache.informers["Pod"].synced.set()
    cache.informers["Node"].synced.set()
    cache.informers["Deployment"].synced.set()
    with threads._lock:
        assert threads._settle(threads._threads["w1"]) is None
    assert stored(store).evicted_at is None
    # Listed and answering, the pod is not there: it was evicted while Deckhand was down.
    cache.informers["Pod"].unreachable_since = None
    wait_until(lambda: stored(store).evicted_unseen, 10, "the eviction inferred")
    assert "its pods were evicted while Deckhand was down" in after.edits[-1][1]
    assert f"evicted at {_clock(T0_EPOCH + 12)}" not in after.edits[-1][1]
    threads.stop()


def test_a_deleted_node_ends_its_story_without_buttons(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    outbox.deliver("1.1")
    cache.objects["Node"] = []
    cache.tell("Node", "DELETED", node("Unknown"))
    assert store.open_node_threads() == []
    assert outbox.edits[-1][1].endswith("w1 was removed from the cluster")
    ended = Story.model_validate(store.node_thread("w1", T0).story)  # type: ignore[union-attr]
    assert ended.ended == "removed" and ended.offers() == [] and buttons(ended) == {}
    assert threads.thread_of("w1") == ("COPS", "1.1")
    threads.stop()


def test_a_node_gone_while_deckhand_was_down_ends_its_story(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("Unknown")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    outbox.deliver("1.1")
    threads.stop()
    cache.objects["Node"] = []
    threads, after = started(store, cache)
    assert store.open_node_threads() == [] and after.posts == []
    assert after.edits[-1][0] == "1.1"
    assert "w1 was removed from the cluster" in after.edits[-1][1]
    threads.stop()


def test_a_replica_that_ran_elsewhere_before_the_failure_is_no_replacement(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    other = pod("other", "w2", ready="2026-01-01T09:00:00Z", created="2026-01-01T08:59:00Z")
    cache = Cache([node("True")], [pod("old", "w1"), other])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    cache.tell("Pod", "MODIFIED", other)  # any status update of the healthy replica
    outbox.deliver("1.1")
    s = stored(store)
    assert s.replacements == {} and s.ready_at == {}
    assert "completed" not in (outbox.edits[-1][1] if outbox.edits else outbox.posts[-1])
    # The real replacement (created in the same second as the failure) completes it, and its
    # Ready time is never before the failure.
    cache.tell("Pod", "ADDED", pod("new", "w2", ready="2026-01-01T09:59:59Z",
                                   created="2026-01-01T09:59:59Z"))
    s = stored(store)
    assert s.replacements == {"cardano-node in production": "w2"}
    assert s.ready_at == {"cardano-node in production": T0_EPOCH}
    assert "*failover completed in 0 s*" in outbox.edits[-1][1]
    threads.stop()


def test_a_scheduled_replacement_is_no_longer_stuck(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    outbox.deliver("1.1")
    pending = pod("new", None)
    pending["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                        "message": "0/3 nodes: volume node affinity conflict"}]
    cache.tell("Pod", "ADDED", pending)
    assert "stuck: 0/3 nodes" in outbox.edits[-1][1]
    cache.tell("Pod", "MODIFIED", pod("new", "w2"))
    assert "stuck" not in outbox.edits[-1][1]
    assert "replacement scheduled on w2" in outbox.edits[-1][1]
    assert stored(store).stuck == {}
    threads.stop()


def test_a_node_that_failed_again_while_deckhand_was_down_gets_a_new_message(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("Unknown")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    outbox.deliver("1.1")
    threads.stop()
    # Back and down again meanwhile: the Ready condition changed at 11:00.
    again = "2026-01-01T11:00:00Z"
    cache.objects["Node"] = [node("Unknown", since=again)]
    cache.objects["Pod"] = [pod("old2", "w1", created="2026-01-01T10:30:00Z")]
    threads, after = started(store, cache)
    assert after.edits[0][0] == "1.1" and "w1 came back" in after.edits[0][1]
    assert store.node_thread("w1", T0).closed_at is not None  # type: ignore[union-attr]
    assert len(after.posts) == 1 and f"stopped answering at {_clock(T0_EPOCH + 3600)}" in \
        after.posts[0]
    assert stored(store).since == again
    after.deliver("2.2")
    assert threads.thread_of("w1") == ("COPS", "2.2")
    threads.stop()


def test_a_failure_the_store_could_not_record_is_tried_again(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    real = store.open_node_thread

    def broken(*args: Any) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "open_node_thread", broken)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    assert outbox.posts == [] and store.open_node_threads() == []
    monkeypatch.setattr(store, "open_node_thread", real)
    cache.tell("Node", "MODIFIED", node("Unknown"))  # e.g. its next status update
    assert len(outbox.posts) == 1 and stored(store).since == T0
    threads.stop()


def test_a_message_slack_did_not_take_is_sent_again_each_minute_until_it_is(
        tmp_path: Path) -> None:
    """A Slack outage longer than the outbox's patience: the post, then an edit, given up."""
    store = Store(tmp_path / "d.db")
    cache = Cache([node("True")], [pod("old", "w1")])
    threads, outbox = started(store, cache)
    cache.tell("Node", "MODIFIED", node("Unknown"))
    assert len(outbox.posts) == 1
    outbox.give_up()
    threads.resend()  # within the minute: nothing yet
    assert len(outbox.posts) == 1
    later = time.time() + RESEND_SECONDS
    threads.resend(later)
    assert len(outbox.posts) == 2 and outbox.posts[1] == outbox.posts[0]
    outbox.deliver("100.1")
    assert [row.ts for row in store.open_node_threads()] == ["100.1"]

    cache.tell("Pod", "MODIFIED", pod("old", "w1", deleting=True))
    assert len(outbox.edits) == 1 and "its pods were evicted at" in outbox.edits[0][1]
    outbox.answer_edits(False)
    threads.resend(later + RESEND_SECONDS)
    assert outbox.edits[1] == outbox.edits[0]  # the same text again, to the same message
    outbox.answer_edits(True)
    threads.resend(later + 3 * RESEND_SECONDS)
    assert len(outbox.edits) == 2 and len(outbox.posts) == 2  # taken: nothing more
    threads.stop()
