"""Following rollouts after execution: many at once, on one Deployment watch per namespace.

A follow does not hold a thread. The :class:`Follower` keeps one watch on the Deployments of each
namespace that has a rollout being followed (list, then watch from the list's resourceVersion;
relist on 410 Gone; reconnect with backoff when the API server is gone or frozen) and hands every
change to the follows of that Deployment. One timer thread ends follows that got no verdict in
time. So fifty rollouts cost a handful of threads and connections, and never a worker that answers
people.

When does a follow end?

* The controller's verdict: the rollout is complete (``done``), or its Progressing condition
  says ProgressDeadlineExceeded (``failed``). Deckhand does not judge a rollout by the clock.
* The backstop: no progress seen for the Deployment's ``progressDeadlineSeconds`` plus a margin
  (the controller should have given its verdict by then; something is wrong with the watch or the
  controller) ends it as ``unknown``: "still rolling out; stopped following", never "failed".
* The operator's cap (``follow_cap``), if set: also ``unknown``.
* The Deployment was deleted: ``gone``.
* :meth:`Follower.stop` (shutdown): the follows end without a verdict and without a callback;
  their requests stay ``following`` in the store and the next start follows them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from bot.errors import KubeError, KubeGone
from bot.rollout import Progress, progress, selector_of, why_not_ready

log = logging.getLogger("deckhand.follow")

Obj = dict[str, Any]

#: Added to a Deployment's progressDeadlineSeconds before Deckhand stops waiting for a verdict.
MARGIN_SECONDS = 60.0
#: Kubernetes' default progressDeadlineSeconds, for a Deployment that does not say.
DEFAULT_DEADLINE_SECONDS = 600.0
#: How long one watch request may stay open (the server ends it; the watch is then resumed).
WATCH_SECONDS = 30
#: Reconnect delays after the API server failed, in seconds (the last one repeats).
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


class DeploymentSource(Protocol):
    """What the follower needs from the Kubernetes gateway."""

    def list_deployments(self, namespace: str, context: str | None = None
                         ) -> tuple[list[Obj], str]: ...

    def watch_deployments(self, namespace: str, resource_version: str, timeout_seconds: int,
                          context: str | None = None) -> Any: ...

    def list_pods(self, namespace: str, selector: str, context: str | None = None
                  ) -> list[Obj]: ...


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
    selector: str = ""


@dataclass
class _NamespaceWatch:
    context: str | None
    namespace: str
    follows: dict[str, _Follow] = field(default_factory=dict)
    thread: threading.Thread | None = None
    unreachable_since: float | None = None


class Follower:
    """Follows rollouts; callbacks run on the follower's threads and must not block for long."""

    def __init__(self, kube: DeploymentSource, *, cap: float | None = None,
                 margin: float = MARGIN_SECONDS, report_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._kube = kube
        self._cap = cap
        self._margin = margin
        self._report_interval = report_interval
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._watches: dict[tuple[str | None, str], _NamespaceWatch] = {}
        self._latest: dict[tuple[str | None, str, str], Obj] = {}
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
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = _NamespaceWatch(spec.context, spec.namespace)
            watch.follows[spec.key] = f
            known = self._latest.get((spec.context, spec.namespace, spec.name))
            if watch.thread is None or not watch.thread.is_alive():
                watch.thread = threading.Thread(
                    target=self._watch_loop, args=(watch,), daemon=True,
                    name=f"deckhand-watch-{spec.namespace}")
                watch.thread.start()
            self._ensure_timer()
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

    # -- watching ------------------------------------------------------------------------------

    def _watch_loop(self, watch: _NamespaceWatch) -> None:
        failures = 0
        resource_version: str | None = None
        while not self._stopped.is_set():
            with self._lock:
                if not watch.follows:
                    # Nothing left to follow here: end this watch. A later follow starts a new one.
                    watch.thread = None
                    self._forget(watch)
                    return
            try:
                if resource_version is None:
                    items, resource_version = self._kube.list_deployments(watch.namespace,
                                                                          watch.context)
                    self._reachable(watch)
                    for obj in items:
                        self._offer(watch, obj)
                for kind, obj in self._kube.watch_deployments(
                        watch.namespace, resource_version, WATCH_SECONDS, watch.context):
                    self._reachable(watch)
                    failures = 0
                    resource_version = obj["metadata"].get("resourceVersion") or resource_version
                    if self._stopped.is_set():
                        return
                    if kind == "DELETED":
                        self._deleted(watch, obj)
                    else:
                        self._offer(watch, obj)
                failures = 0
            except KubeGone:
                resource_version = None  # too old to resume: list again
            except KubeError as e:
                self._unreachable(watch, e)
                resource_version = None
                self._stopped.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
            except Exception:
                # A bug must not end the watch silently: log, back off, start over.
                log.exception("watching deployments in %s failed", watch.namespace)
                resource_version = None
                self._stopped.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1

    def _forget(self, watch: _NamespaceWatch) -> None:
        """Drop the cached objects of a namespace nobody follows any more (lock held)."""
        self._watches.pop((watch.context, watch.namespace), None)
        for k in [k for k in self._latest if k[0] == watch.context and k[1] == watch.namespace]:
            del self._latest[k]

    def _reachable(self, watch: _NamespaceWatch) -> None:
        if watch.unreachable_since is not None:
            log.info("the API server answers again for %s", watch.namespace)
            watch.unreachable_since = None

    def _unreachable(self, watch: _NamespaceWatch, error: KubeError) -> None:
        if watch.unreachable_since is None:
            watch.unreachable_since = self._clock()
            log.warning("watching deployments in %s: %s; reconnecting", watch.namespace, error)

    # -- judging -------------------------------------------------------------------------------

    def _offer(self, watch: _NamespaceWatch, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            self._latest[(watch.context, watch.namespace, name)] = obj
            follows = [f for f in watch.follows.values() if f.spec.name == name]
        for f in follows:
            self._judge(watch, f, obj)

    def _judge(self, watch: _NamespaceWatch, f: _Follow, obj: Obj) -> None:
        if int(obj["metadata"].get("generation") or 0) < f.spec.min_generation:
            return  # the state from before the change
        p = progress(obj, f.spec.earlier)
        now = self._clock()
        deadline = obj["spec"].get("progressDeadlineSeconds") or DEFAULT_DEADLINE_SECONDS
        if f.last is None or _moved(f.last, p):
            f.quiet_deadline = now + float(deadline) + self._margin
        f.last = p
        f.selector = selector_of(obj)
        if p.done:
            self._end(watch, f, FollowEnd(Ending.DONE, p.message, p))
        elif p.failed:
            self._end(watch, f, FollowEnd(Ending.FAILED, p.message, p, self._reasons(f)))
        elif now - f.last_report >= self._report_interval:
            f.last_report = now
            try:
                f.on_progress(p, list(self._reasons(f)))
            except Exception:
                log.exception("progress report of %s failed", f.spec.key)

    def _reasons(self, f: _Follow) -> tuple[str, ...]:
        if not f.selector:
            return ()
        try:
            return tuple(why_not_ready(self._kube.list_pods(f.spec.namespace, f.selector,
                                                            f.spec.context)))
        except KubeError:
            return ()

    def _deleted(self, watch: _NamespaceWatch, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            self._latest.pop((watch.context, watch.namespace, name), None)
            follows = [f for f in watch.follows.values() if f.spec.name == name]
        for f in follows:
            self._end(watch, f, FollowEnd(Ending.GONE, "the deployment was deleted", f.last))

    def _end(self, watch: _NamespaceWatch, f: _Follow, end: FollowEnd) -> None:
        with self._lock:
            # Only one ending per follow: whoever removes it calls back.
            if watch.follows.get(f.spec.key) is not f:
                return
            del watch.follows[f.spec.key]
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
            with self._lock:
                for watch in self._watches.values():
                    for f in watch.follows.values():
                        end = self._overdue(watch, f, now)
                        if end is not None:
                            due.append((watch, f, end))
            for watch, f, end in due:
                self._end(watch, f, replace(end, reasons=self._reasons(f)))

    def _overdue(self, watch: _NamespaceWatch, f: _Follow, now: float) -> FollowEnd | None:
        where = f.last.message if f.last else "no state seen yet"
        if f.cap_deadline is not None and now >= f.cap_deadline:
            return FollowEnd(Ending.UNKNOWN, f"still rolling out ({where}); stopped following "
                                             f"after the configured {self._cap:.0f} s", f.last)
        if now >= f.quiet_deadline:
            why = ("the Kubernetes API server could not be reached"
                   if watch.unreachable_since is not None else "no verdict from the controller")
            return FollowEnd(Ending.UNKNOWN, f"still rolling out ({where}); stopped following: "
                                             f"{why} within the progress deadline", f.last)
        return None


def _moved(before: Progress, after: Progress) -> bool:
    return (before.updated, before.ready, before.available, before.message) != (
        after.updated, after.ready, after.available, after.message)
