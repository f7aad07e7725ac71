"""The follower's logic with a scripted API server behind the real cache: verdicts, generations,
deadlines, no watch of its own (the cache's one Deployment watch per namespace serves every
follow), relists and reconnects, and a stop that judges nothing."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deckhand.bot.cluster.cache import ClusterCache
from deckhand.bot.cluster.rollout import Progress
from deckhand.bot.errors import KubeError, KubeGone
from deckhand.bot.intake.follow import Ending, FollowEnd, Follower, FollowSpec
from tests.waiting import wait_until

Obj = dict[str, Any]


def deployment(name: str = "web", *, generation: int = 2, observed: int = 2, desired: int = 1,
               updated: int = 1, ready: int = 1, available: int = 1, rv: str = "10",
               deadline_exceeded: bool = False, progress_deadline: int | None = 30) -> Obj:
    conditions = []
    if deadline_exceeded:
        conditions.append({"type": "Progressing", "status": "False",
                           "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{name}-1" has timed out progressing.'})
    spec: Obj = {"replicas": desired, "selector": {"matchLabels": {"app": name}}}
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {"metadata": {"name": name, "namespace": "ns", "generation": generation,
                         "resourceVersion": rv},
            "spec": spec,
            "status": {"observedGeneration": observed, "replicas": updated,
                       "updatedReplicas": updated, "readyReplicas": ready,
                       "availableReplicas": available, "conditions": conditions}}


class Source:
    """A scripted API server: a list answer, then watch events pushed by the test (Deployments,
    and Pods through ``pod_events``; the other kinds list empty and stay quiet)."""

    def __init__(self, items: list[Obj] | None = None) -> None:
        self.items = items or []
        self.events: queue.Queue[tuple[str, Obj] | Exception | None] = queue.Queue()
        self.pod_events: queue.Queue[tuple[str, Obj]] = queue.Queue()
        self.lists = 0
        self.watches = 0
        self.list_error: Exception | None = None
        self.lock = threading.Lock()

    def list_raw(self, kind: str, namespace: str | None, selector: str = "",
                 context: str | None = None) -> tuple[list[Obj], str]:
        if kind != "Deployment":
            return [], "1"  # Pods arrive as events
        with self.lock:
            self.lists += 1
        if self.list_error is not None:
            error, self.list_error = self.list_error, None
            raise error
        return list(self.items), "1"

    def watch_raw(self, kind: str, namespace: str | None, resource_version: str,
                  timeout_seconds: int, selector: str = "", context: str | None = None
                  ) -> Iterator[tuple[str, Obj]]:
        if kind == "Pod":
            try:
                yield self.pod_events.get(timeout=0.2)
            except queue.Empty:
                pass
            return
        if kind != "Deployment":
            time.sleep(0.2)
            return
        with self.lock:
            self.watches += 1
        while True:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                return  # the server ended the watch; the follower resumes it
            if event is None:
                return
            if isinstance(event, Exception):
                raise event
            yield event


class Recorder:
    def __init__(self) -> None:
        self.progress: list[Progress] = []
        self.reasons: list[list[str]] = []
        self.ends: list[FollowEnd] = []
        self.order: list[str] = []

    def on_progress(self, p: Progress, reasons: list[str]) -> None:
        self.progress.append(p)
        self.reasons.append(reasons)
        self.order.append("progress")

    def on_end(self, end: FollowEnd) -> None:
        self.ends.append(end)
        self.order.append("end")


def pod(name: str, rv: str, reason: str | None = None, message: str = "") -> Obj:
    """A pod of the ``web`` Deployment, not ready; ``reason``: why its container waits."""
    state: Obj = {"waiting": {"reason": reason, "message": message}} if reason else {
        "running": {}}
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "web", "ready": False,
                                              "restartCount": int(rv), "state": state}]}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(key: str = "r1", name: str = "web", min_generation: int = 2) -> FollowSpec:
    return FollowSpec(key=key, namespace="ns", name=name, context=None,
                      min_generation=min_generation)


@pytest.fixture
def follower_and_source() -> Iterator[tuple[Follower, Source, Clock]]:
    source = Source()
    clock = Clock()
    cache = ClusterCache(source)
    follower = Follower(cache, report_interval=0, clock=clock)
    yield follower, source, clock
    follower.stop()
    cache.stop()


def test_the_controllers_verdict_ends_the_follow(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()
    source.items = [deployment(updated=0, ready=0, available=0)]
    follower.follow(spec(), rec.on_progress, rec.on_end)
    wait_until(lambda: rec.progress, 5, "a progress report")
    assert rec.ends == []
    source.events.put(("MODIFIED", deployment(rv="11")))
    wait_until(lambda: rec.ends, 5, "the end")
    assert rec.ends[0].ending is Ending.DONE
    assert follower.active() == 0


def test_deadline_exceeded_is_failed(follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()
    follower.follow(spec(), rec.on_progress, rec.on_end)
    source.events.put(("MODIFIED", deployment(ready=0, available=0, deadline_exceeded=True)))
    wait_until(lambda: rec.ends, 5, "the end")
    assert rec.ends[0].ending is Ending.FAILED
    assert "progress deadline exceeded" in rec.ends[0].message


def test_states_from_before_the_change_are_ignored(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()
    # The old generation looks complete; it must not end the follow of generation 3.
    source.items = [deployment(generation=2, observed=2)]
    follower.follow(spec(min_generation=3), rec.on_progress, rec.on_end)
    source.events.put(("MODIFIED", deployment(generation=3, observed=2, rv="11")))
    source.events.put(("MODIFIED", deployment(generation=3, observed=3, ready=0, available=0,
                                              rv="12")))
    wait_until(lambda: len(rec.progress) >= 2, 5, "two reports")
    assert rec.ends == []
    source.events.put(("MODIFIED", deployment(generation=3, observed=3, rv="13")))
    wait_until(lambda: rec.ends, 5, "the end")
    assert rec.ends[0].ending is Ending.DONE


def test_no_verdict_within_the_progress_deadline_is_unknown_not_failed(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, clock = follower_and_source
    rec = Recorder()
    source.items = [deployment(ready=0, available=0, progress_deadline=30)]
    follower.follow(spec(), rec.on_progress, rec.on_end, deadline_seconds=30)
    wait_until(lambda: rec.progress, 5, "a progress report")
    clock.now += 30 + 59  # within deadline + margin: still following
    source.events.put(("MODIFIED", deployment(ready=0, available=0, rv="11")))
    wait_until(lambda: source.events.empty(), 5, "the event consumed")
    assert rec.ends == []
    clock.now += 61  # no progress since: past deadline + margin
    wait_until(lambda: rec.ends, 5, "the end")
    assert rec.ends[0].ending is Ending.UNKNOWN
    assert "stopped following" in rec.ends[0].message


def test_progress_pushes_the_backstop_out(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, clock = follower_and_source
    rec = Recorder()
    source.items = [deployment(desired=3, updated=1, ready=0, available=0)]
    follower.follow(spec(), rec.on_progress, rec.on_end, deadline_seconds=30)
    wait_until(lambda: rec.progress, 5, "a progress report")
    for step in range(1, 3):
        clock.now += 80
        source.events.put(("MODIFIED", deployment(desired=3, updated=3, ready=step,
                                                  available=step, rv=str(20 + step))))
        wait_until(lambda s=step: len(rec.progress) >= s + 1, 5, "a report")
    assert rec.ends == []  # 160 s in all, but never 90 s without progress


def test_the_operator_cap_ends_as_unknown() -> None:
    source = Source([deployment(ready=0, available=0)])
    clock = Clock()
    follower = Follower(ClusterCache(source), cap=100, clock=clock)
    rec = Recorder()
    try:
        follower.follow(spec(), rec.on_progress, rec.on_end)
        clock.now += 101
        wait_until(lambda: rec.ends, 5, "the end")
        assert rec.ends[0].ending is Ending.UNKNOWN
        assert "configured 100 s" in rec.ends[0].message
    finally:
        follower.stop()


def test_a_deleted_deployment_ends_the_follow(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()
    follower.follow(spec(), rec.on_progress, rec.on_end)
    source.events.put(("DELETED", deployment(ready=0, available=0)))
    wait_until(lambda: rec.ends, 5, "the end")
    assert rec.ends[0].ending is Ending.GONE


def test_many_follows_share_one_watch(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    recs = {f"d{i}": Recorder() for i in range(50)}
    source.items = [deployment(name, ready=0, available=0) for name in recs]
    for name, rec in recs.items():
        follower.follow(spec(key=name, name=name), rec.on_progress, rec.on_end)
    assert follower.active() == 50
    for name in recs:
        source.events.put(("MODIFIED", deployment(name, rv="20")))
    wait_until(lambda: all(r.ends for r in recs.values()), 10, "every follow ended")
    assert all(r.ends[0].ending is Ending.DONE for r in recs.values())
    assert source.lists == 1  # one list and one watch served all fifty
    assert threading.active_count() < 20


def test_gone_relists_and_an_unreachable_server_is_retried(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()
    source.items = [deployment(ready=0, available=0)]
    follower.follow(spec(), rec.on_progress, rec.on_end)
    wait_until(lambda: rec.progress, 5, "a progress report")
    source.events.put(KubeGone("too old"))
    wait_until(lambda: source.lists >= 2, 5, "a relist after 410 Gone")
    source.list_error = KubeError("the Kubernetes API server refused the connection")
    source.events.put(KubeError("connection reset"))
    source.items = [deployment(rv="30")]  # meanwhile the rollout completed
    wait_until(lambda: rec.ends, 10, "the end after reconnecting")
    assert rec.ends[0].ending is Ending.DONE


def test_stop_ends_follows_without_a_verdict() -> None:
    source = Source([deployment(ready=0, available=0)])
    follower = Follower(ClusterCache(source))
    rec = Recorder()
    follower.follow(spec(), rec.on_progress, rec.on_end)
    follower.stop()
    source.events.put(("MODIFIED", deployment(rv="11")))
    assert follower.active() == 0
    assert rec.ends == []
    follower.follow(spec("r2"), rec.on_progress, rec.on_end)  # refused once stopped
    assert follower.active() == 0


def test_a_failing_callback_does_not_stop_the_watch(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    follower, source, _ = follower_and_source
    rec = Recorder()

    def broken(p: Progress, reasons: list[str]) -> None:
        raise RuntimeError("boom")

    follower.follow(spec("a", "a"), broken, rec.on_end)
    follower.follow(spec("b", "b"), rec.on_progress, rec.on_end)
    source.events.put(("MODIFIED", deployment("a", ready=0, available=0)))
    source.events.put(("MODIFIED", deployment("b")))
    wait_until(lambda: rec.ends, 5, "b's end")
    assert rec.ends[0].ending is Ending.DONE


def test_the_condition_from_before_the_change_is_recognised_whatever_its_time_format() -> None:
    from deckhand.bot.intake.follow import same_condition

    served = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
              "lastUpdateTime": "2026-01-02T03:04:05Z", "message": "timed out"}
    typed = {**served, "lastUpdateTime": "2026-01-02T03:04:05+00:00"}
    assert same_condition(served, typed) is served
    later = {**served, "lastUpdateTime": "2026-01-02T03:04:06Z"}
    assert same_condition(later, typed) is typed
    assert same_condition({**served, "message": "other"}, typed) is typed
    assert same_condition(served, None) is None


def test_pod_changes_are_shown_while_the_deployment_stands_still(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    """A stalled rollout: the Deployment's status no longer moves, its pods do."""
    follower, source, _ = follower_and_source
    rec = Recorder()
    source.items = [deployment(updated=1, ready=0, available=0)]
    follower.follow(spec(), rec.on_progress, rec.on_end)
    wait_until(lambda: rec.progress, 5, "the first report")
    source.pod_events.put(("ADDED", pod("web-1", "3", "CrashLoopBackOff", "back-off 40s")))
    wait_until(lambda: any("CrashLoopBackOff" in " ".join(r) for r in rec.reasons), 5,
               "the pod's reason reported")
    count = len(rec.progress)
    source.pod_events.put(("MODIFIED", pod("web-1", "4", "CrashLoopBackOff", "back-off 40s")))
    wait_until(lambda: len(rec.progress) > count, 5, "the restart counted")
    assert rec.ends == []


def test_a_report_held_back_by_the_throttle_is_sent_by_the_timer() -> None:
    source = Source([deployment(updated=1, ready=0, available=0)])
    clock = Clock()
    cache = ClusterCache(source)
    follower = Follower(cache, report_interval=10, clock=clock)
    try:
        rec = Recorder()
        follower.follow(spec(), rec.on_progress, rec.on_end)
        wait_until(lambda: rec.progress, 5, "the first report")
        source.pod_events.put(("ADDED", pod("web-1", "1", "ErrImagePull")))
        wait_until(lambda: follower._watches[(None, "ns")].follows["r1"].held, 5,
                   "the report held back")
        assert len(rec.progress) == 1
        clock.now += 11
        wait_until(lambda: len(rec.progress) == 2, 5, "the held report sent by the timer")
        assert "ErrImagePull" in " ".join(rec.reasons[-1])
    finally:
        follower.stop()
        cache.stop()


def test_nothing_is_reported_once_the_end_has_begun(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    """A report in progress when the verdict arrives finishes first; none starts after it, so the
    final message is always the last edit."""
    follower, source, _ = follower_and_source
    rec = Recorder()
    entered, release = threading.Event(), threading.Event()

    def slow(p: Progress, reasons: list[str]) -> None:
        if reasons:  # the pod's report: held up until the test lets it go
            entered.set()
            release.wait(10)
        rec.on_progress(p, reasons)

    source.items = [deployment(updated=1, ready=0, available=0)]
    follower.follow(spec(), slow, rec.on_end)
    wait_until(lambda: rec.progress, 5, "the first report")
    source.pod_events.put(("ADDED", pod("web-1", "1", "ContainerCreating")))
    assert entered.wait(5)
    source.events.put(("MODIFIED", deployment(rv="11")))  # done, while the report is running
    time.sleep(0.5)
    assert rec.ends == []  # the end waits for the report in progress
    release.set()
    wait_until(lambda: rec.ends, 5, "the end")
    source.pod_events.put(("MODIFIED", pod("web-1", "2", "CrashLoopBackOff")))
    time.sleep(0.5)
    assert rec.order == ["progress", "progress", "end"]


def test_a_deployment_missing_from_the_cache_ends_the_follow_as_deleted(
        follower_and_source: tuple[Follower, Source, Clock]) -> None:
    """Deleted while the bot was down: no event will ever say so; the synced cache does."""
    follower, source, clock = follower_and_source
    rec = Recorder()
    source.items = []
    follower.follow(spec(), rec.on_progress, rec.on_end)

    def ended() -> bool:
        clock.now += 1  # the timer sees it missing, then missing for GONE_AFTER_SECONDS
        return bool(rec.ends)

    wait_until(ended, 10, "the end")
    assert rec.ends[0].ending is Ending.GONE
    assert rec.ends[0].message == "the Deployment was deleted"
