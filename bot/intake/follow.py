"""Following rollouts after execution: many at once, fed by the cache's Deployment watches.

A follow does not hold a thread, nor a watch of its own. The :class:`Follower` subscribes to the
Deployment informer of each namespace that has a rollout being followed (bot/cluster/cache.py: list, then
watch from the list's resourceVersion; relist on 410 Gone; reconnect with backoff when the API
server is gone or frozen; a relist replays what changed meanwhile) and hands every change to the
follows of that Deployment; why pods are not ready comes from the cached Pods. Pod changes in the
namespace (readiness, restarts, why a pod waits) are shown too, even when the Deployment object
does not change: a stalled rollout's status stops moving once its pods exist, and then the pods
are all there is to show. Reports are throttled to one per ``report_interval`` per follow and
sent only when what they show changed; the last one held back by the throttle is sent by the
timer. One timer thread also ends follows that got no verdict in time. So fifty rollouts cost no
extra thread or connection, and never a worker that answers people.

When does a follow end?

* The controller's verdict: the rollout is complete (``done``), or its Progressing condition
  says ProgressDeadlineExceeded (``failed``). Deckhand does not judge a rollout by the clock.
* The backstop: no progress seen for the Deployment's ``progressDeadlineSeconds`` plus a margin
  (the controller should have given its verdict by then; something is wrong with the watch or the
  controller) ends it as ``unknown``: "still rolling out; stopped following", never "failed".
* The operator's cap (``follow_cap``), if set: also ``unknown``.
* The Deployment was deleted: ``gone``; also when it is simply absent from the cache's picture
  (deleted while the bot was down, so no event will ever say so) for :data:`GONE_AFTER_SECONDS`
  while the API server answers.
* :meth:`Follower.stop` (shutdown): the follows end without a verdict and without a callback;
  their requests stay ``following`` in the store and the next start follows them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from deckhand.bot.cluster.cache import ClusterCache, matches, selected
from deckhand.bot.cluster.rollout import Progress, progress, progressing_condition, why_not_ready

log = logging.getLogger("deckhand.follow")

Obj = dict[str, Any]

#: Added to a Deployment's progressDeadlineSeconds before Deckhand stops waiting for a verdict.
MARGIN_SECONDS = 60.0
#: Kubernetes' default progressDeadlineSeconds, for a Deployment that does not say.
DEFAULT_DEADLINE_SECONDS = 600.0
#: How long a followed Deployment may be missing from a synced, reachable cache before the follow
#: ends as ``gone``. Not zero: a Deployment created a moment ago may not have reached the cache.
GONE_AFTER_SECONDS = 5.0

DELETED = "the Deployment was deleted"


class Ending(StrEnum):
    DONE = "done"          # the rollout completed
    FAILED = "failed"      # the controller reported ProgressDeadlineExceeded
    UNKNOWN = "unknown"    # no verdict in time (backstop or operator cap): still rolling out
    GONE = "gone"          # the Deployment was deleted


@dataclass(frozen=True)
class FollowEnd:
    ending: Ending
    message: str
    progress: Progress | None = None
    reasons: tuple[str, ...] = ()
    """Why pods are not ready, when the rollout did not complete (one line per pod)."""


@dataclass(frozen=True)
class FollowSpec:
    """One rollout to follow: which Deployment, and what counts as this rollout."""

    key: str
    """Unique per follow (the request id)."""
    namespace: str
    name: str
    context: str | None
    min_generation: int = 0
    """Objects older than the change (a generation before it) are not this rollout's state."""
    earlier: Obj | None = None
    """The Progressing condition from before the change (see bot.rollout.progress)."""
    started: float | None = None
    """When following began (wall clock; a resumed follow keeps its original start)."""


@dataclass
class _Follow:
    spec: FollowSpec
    on_progress: Callable[[Progress, list[str]], None]
    on_end: Callable[[FollowEnd], None]
    quiet_deadline: float
    cap_deadline: float | None
    last: Progress | None = None
    last_report: float = 0.0
    selector: Obj | None = None
    reported: tuple[Any, ...] | None = None
    """What the last report showed (reports that would show the same are not sent)."""
    held: bool = False
    """A report was held back by the throttle: the timer sends it."""
    absent_since: float | None = None
    """Since when the Deployment is missing from the (synced, reachable) cache."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while reporting and while ending: no report starts once the end has begun, and the
    end waits for a report in progress, so the final message is always the last edit."""


@dataclass
class _NamespaceWatch:
    """The follows of one namespace, and the subscription to its Deployment informer."""

    context: str | None
    namespace: str
    follows: dict[str, _Follow] = field(default_factory=dict)
    unsubscribe: Callable[[], None] | None = None
    unreachable: Callable[[], float | None] = lambda: None
    deployments: Any = None
    """The namespace's Deployment informer (bot/cluster/cache.py)."""


class Follower:
    """Follows rollouts; callbacks run on the cache's watch threads and the follower's timer, and
    must not block for long."""

    def __init__(self, cache: ClusterCache, *, cap: float | None = None,
                 margin: float = MARGIN_SECONDS, report_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._cache = cache
        self._cap = cap
        self._margin = margin
        self._report_interval = report_interval
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._watches: dict[tuple[str | None, str], _NamespaceWatch] = {}
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------

    def follow(self, spec: FollowSpec, on_progress: Callable[[Progress, list[str]], None],
               on_end: Callable[[FollowEnd], None], deadline_seconds: float | None = None) -> None:
        """Start following; exactly one ``on_end`` follows, unless the follower is stopped.

        ``deadline_seconds``: the Deployment's progressDeadlineSeconds if known (it is read again
        from every event).
        """
        now = self._clock()
        elapsed = max(0.0, self._wall() - spec.started) if spec.started else 0.0
        f = _Follow(spec, on_progress, on_end,
                    quiet_deadline=now + (deadline_seconds or DEFAULT_DEADLINE_SECONDS)
                    + self._margin,
                    cap_deadline=now + max(0.0, self._cap - elapsed) if self._cap else None)
        if self._stopped.is_set():
            return
        key = (spec.context, spec.namespace)
        informer = self._cache.informer(spec.context, spec.namespace, "Deployment")
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = _NamespaceWatch(spec.context, spec.namespace)
                watch.unreachable = lambda: informer.unreachable_since
                watch.deployments = informer
            watch.follows[spec.key] = f
            if watch.unsubscribe is None:
                w = watch
                pods = self._cache.informer(spec.context, spec.namespace, "Pod")
                off = (informer.subscribe(lambda kind, obj: self._event(w, kind, obj)),
                       pods.subscribe(lambda kind, obj: self._pod_event(w, obj)))

                def unsubscribe() -> None:
                    for each in off:
                        each()

                watch.unsubscribe = unsubscribe
            self._ensure_timer()
        # The state the cache already holds (nothing if it has not listed yet: the list will
        # arrive as events).
        known = informer.get(spec.name)
        if known is not None:
            self._offer(watch, known)

    def active(self) -> int:
        """How many follows are running."""
        with self._lock:
            return sum(len(w.follows) for w in self._watches.values())

    def stop(self) -> None:
        """End every follow without a verdict (no callbacks); the watches wind down."""
        self._stopped.set()
        with self._lock:
            for watch in self._watches.values():
                watch.follows.clear()
                if watch.unsubscribe is not None:
                    watch.unsubscribe()
                    watch.unsubscribe = None

    # -- events from the cache ---------------------------------------------------------------

    def _event(self, watch: _NamespaceWatch, kind: str, obj: Obj) -> None:
        if self._stopped.is_set():
            return
        if kind == "DELETED":
            self._deleted(watch, obj)
        else:
            self._offer(watch, obj)

    def _pod_event(self, watch: _NamespaceWatch, pod: Obj) -> None:
        """A pod changed: report again the follows whose pods it is (if what they show moved)."""
        if self._stopped.is_set():
            return
        labels = pod.get("metadata", {}).get("labels") or {}
        with self._lock:
            follows = [f for f in watch.follows.values()
                       if f.last is not None and f.selector and matches(f.selector, labels)]
        for f in follows:
            self._report(watch, f)

    # -- judging -------------------------------------------------------------------------------

    def _offer(self, watch: _NamespaceWatch, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            follows = [f for f in watch.follows.values() if f.spec.name == name]
        for f in follows:
            self._judge(watch, f, obj)

    def _judge(self, watch: _NamespaceWatch, f: _Follow, obj: Obj) -> None:
        if int(obj["metadata"].get("generation") or 0) < f.spec.min_generation:
            return  # the state from before the change
        p = progress(obj, same_condition(progressing_condition(obj), f.spec.earlier))
        now = self._clock()
        deadline = obj["spec"].get("progressDeadlineSeconds") or DEFAULT_DEADLINE_SECONDS
        if f.last is None or _moved(f.last, p):
            f.quiet_deadline = now + float(deadline) + self._margin
        f.last = p
        f.selector = obj["spec"].get("selector")
        if p.done:
            self._end(watch, f, FollowEnd(Ending.DONE, p.message, p))
        elif p.failed:
            self._end(watch, f, FollowEnd(Ending.FAILED, p.message, p, self._reasons(f)))
        else:
            self._report(watch, f)

    def _report(self, watch: _NamespaceWatch, f: _Follow, *, held: bool = False) -> None:
        """Show ``f``'s latest progress and pods, unless it ended, shows nothing new, or was
        shown less than ``report_interval`` ago (then the timer shows it later)."""
        if f.last is None:
            return
        with f.lock:
            with self._lock:
                if watch.follows.get(f.spec.key) is not f:
                    return  # ended: the final message is the last word
            if held and not f.held:
                return
            p = f.last
            reasons = self._reasons(f)
            shown = (p.updated, p.ready, p.available, p.desired, p.message, reasons)
            if shown == f.reported:
                f.held = False
                return
            now = self._clock()
            if now - f.last_report < self._report_interval:
                f.held = True
                return
            f.last_report, f.reported, f.held = now, shown, False
            try:
                f.on_progress(p, list(reasons))
            except Exception:
                log.exception("progress report of %s failed", f.spec.key)

    def _reasons(self, f: _Follow) -> tuple[str, ...]:
        if not f.selector:
            return ()
        pods = self._cache.informer(f.spec.context, f.spec.namespace, "Pod").items()
        return tuple(why_not_ready(selected(pods, f.selector)))

    def _deleted(self, watch: _NamespaceWatch, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            follows = [f for f in watch.follows.values() if f.spec.name == name]
        for f in follows:
            self._end(watch, f, FollowEnd(Ending.GONE, DELETED, f.last))

    def _end(self, watch: _NamespaceWatch, f: _Follow, end: FollowEnd) -> None:
        with f.lock:  # a report in progress finishes first; none starts after
            with self._lock:
                # Only one ending per follow: whoever removes it calls back.
                if watch.follows.get(f.spec.key) is not f:
                    return
                del watch.follows[f.spec.key]
                if not watch.follows:
                    # Nobody follows here any more: stop listening (the cache keeps watching).
                    if watch.unsubscribe is not None:
                        watch.unsubscribe()
                    self._watches.pop((watch.context, watch.namespace), None)
            try:
                f.on_end(end)
            except Exception:
                log.exception("ending the follow of %s failed", f.spec.key)

    # -- time ------------------------------------------------------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Thread(target=self._tick, daemon=True,
                                           name="deckhand-follow-timer")
            self._timer.start()

    def _tick(self) -> None:
        while not self._stopped.wait(0.5):
            now = self._clock()
            due: list[tuple[_NamespaceWatch, _Follow, FollowEnd]] = []
            held: list[tuple[_NamespaceWatch, _Follow]] = []
            with self._lock:
                for watch in self._watches.values():
                    for f in watch.follows.values():
                        end = self._overdue(watch, f, now)
                        if end is not None:
                            due.append((watch, f, end))
                        elif f.held:
                            held.append((watch, f))
            for watch, f, end in due:
                self._end(watch, f, replace(end, reasons=self._reasons(f)))
            for watch, f in held:
                self._report(watch, f, held=True)

    def _overdue(self, watch: _NamespaceWatch, f: _Follow, now: float) -> FollowEnd | None:
        where = f.last.message if f.last else "no state seen yet"
        informer = watch.deployments
        if (informer is not None and informer.synced.is_set() and watch.unreachable() is None
                and informer.get(f.spec.name) is None):
            if f.absent_since is None:
                f.absent_since = now
            elif now - f.absent_since >= GONE_AFTER_SECONDS:
                return FollowEnd(Ending.GONE, DELETED, f.last)
        else:
            f.absent_since = None
        if f.cap_deadline is not None and now >= f.cap_deadline:
            return FollowEnd(Ending.UNKNOWN, f"still rolling out ({where}); stopped following "
                                             f"after the configured {self._cap:.0f} s", f.last)
        if now >= f.quiet_deadline:
            why = ("the Kubernetes API server could not be reached"
                   if watch.unreachable() is not None else "no verdict from the controller")
            return FollowEnd(Ending.UNKNOWN, f"still rolling out ({where}); stopped following: "
                                             f"{why} within the progress deadline", f.last)
        return None


def _moved(before: Progress, after: Progress) -> bool:
    return (before.updated, before.ready, before.available, before.message) != (
        after.updated, after.ready, after.available, after.message)


def same_condition(now: Obj | None, earlier: Obj | None) -> Obj | None:
    """``now`` if it is the ``earlier`` condition, else ``earlier``.

    ``earlier`` was read through the gateway's typed client, which writes times as
    ``2026-01-02T03:04:05+00:00``; the cache holds them as served (``...05Z``). The same condition
    must compare equal, or an old ProgressDeadlineExceeded would pass for this rollout's."""
    if now is None or earlier is None or now == earlier:
        return earlier
    if set(now) != set(earlier):
        return earlier
    for key, value in now.items():
        other = earlier[key]
        if key.endswith("Time") and isinstance(value, str) and isinstance(other, str):
            try:
                if datetime.fromisoformat(value) != datetime.fromisoformat(other):
                    return earlier
            except ValueError:
                return earlier
        elif value != other:
            return earlier
    return now
