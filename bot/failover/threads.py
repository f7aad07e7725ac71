"""The node-failure thread: when a node that runs managed workloads stops being Ready, one message
in the operations channel (``failover.channel``), edited as the failover happens.

Fed by the cache's watches (Nodes and the managed namespaces' Pods; no polling): the node
stopped answering at T (its Ready condition's transition), its pods are evicted, the replacement
is scheduled on X, Ready at T', "failover completed in N s" (N from T, the cluster's own times),
or "stuck: <the scheduler's message>" while a replacement is Pending; and when the node is Ready
again, or the Node is deleted, the message says so and the story ends. A replacement is a pod of
the workload created at or after the failure, not one of the failed node's (another replica that
ran elsewhere all along is not one). Every Slack write goes through the outbox.

The message carries buttons (bot/slack/blocks.py ``node_failure``): Cordon, Drain (``/failover
drill``), and once the node stays down (its pods were evicted and its Ready condition is
"Unknown": the kubelet stopped reporting, the node is presumably off) "Mark out of service", or
"Back in service" while the node has the out-of-service taint. A node whose kubelet reports
NotReady ("False") runs: it is never offered out of service. A click is
the same request as typing the command in the message's thread (bot/intake/clicks.py), so it goes through
the gate like any other.

Persisted (the store's ``node_threads``): one row per failure, keyed by the node and its Ready
condition's transition time, with the message's ts and the story. A restart continues the
stories of nodes still down (same message, edits only), ends those whose node is Ready again or
gone, ends the old story and opens a new one when the node's Ready condition changed while
Deckhand was down (it came back and failed again), and opens one for a node found down with no
story for that failure. Pods missing at the restart count as evicted only once their namespace
was really listed ("while Deckhand was down": their time is not known). The ts is stored when the
post completes; a restart between queueing the first post and Slack's answer posts it once more
(the outbox is at-least-once), never more for the same failure.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from deckhand.bot.cluster.cache import ClusterCache, Informer, matches
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.failover import blocks
from deckhand.bot.failover.story import Story, _epoch
from deckhand.bot.failover.verdict import (
    NodeHealth,
    node_health,
    out_of_service,
    pending_reason,
    ready_condition,
    toleration_seconds,
)
from deckhand.bot.slack.outbox import Delivered, Outbox
from deckhand.bot.store import Store

log = logging.getLogger("deckhand.failover")

Obj = dict[str, Any]

#: How long the start waits for the cache's first lists before comparing with the stored stories.
CATCH_UP_SECONDS = 60
#: A message Slack did not take (the outbox gave up: a long outage) is sent again this often.
RESEND_SECONDS = 60.0

def _ready_since(pod: Obj) -> float | None:
    ready = ready_condition(pod)
    return _epoch(ready.get("lastTransitionTime")) if ready is not None else None


def _evicted_at(pod: Obj) -> float | None:
    """When the pod's deletion was asked for. Its deletionTimestamp is when the grace period
    ends (the deletion plus deletionGracePeriodSeconds), not when it was evicted."""
    meta = pod["metadata"]
    until = _epoch(meta.get("deletionTimestamp"))
    if until is None:
        return None
    return until - float(meta.get("deletionGracePeriodSeconds") or 0)


def _listed(informer: Informer) -> bool:
    """The informer has its picture and the API server answers: what is missing is gone."""
    return informer.synced.is_set() and informer.unreachable_since is None


@dataclass
class _Thread:
    """One open (or just closed) failure and where its message is."""

    story: Story
    channel: str
    ts: str | None = None
    posting: bool = False
    """The first post is in the outbox: later changes wait for its ts."""
    posted: tuple[str, list[dict[str, Any]]] | None = None
    """What the first post showed (its completion edits only if the story moved on)."""
    shown_at: float = 0.0
    """When its latest text was handed to the outbox."""


class NodeThreads:
    """Watches Nodes and managed Pods through the cache and keeps one Story per failed node."""

    def __init__(self, config: DeckhandConfig, cache: ClusterCache, outbox: Outbox,
                 store: Store, channel: str) -> None:
        self._config = config
        self._cache = cache
        self._outbox = outbox
        self._store = store
        self._channel = channel
        # Reentrant: the outbox calls on_done on the caller's thread when it refuses at once.
        self._lock = threading.RLock()
        self._ready: dict[str, str] = {}
        self._threads: dict[str, _Thread] = {}
        """The open stories, by node."""
        self._unsent: dict[int, _Thread] = {}
        """Stories (open or just closed, by id) whose latest text Slack did not take: the
        outbox gave up (a Slack outage longer than its give_up_after). resend() tries again."""
        self._caught_up = False
        """The first picture (after a start) was compared with the stored stories; events
        before that are left to it."""
        self._unsettled: list[_Thread] = []
        """Continued stories whose pods' namespace had not listed at the catch-up: whether
        their pods were evicted while Deckhand was down is decided once it has."""
        self._stopped = threading.Event()
        self._targets = [(config.environments[e].context, config.namespace_of(w, e), w, e)
                         for w, spec in config.workloads.items() for e in spec.environments]
        self._contexts = sorted({t[0] for t in self._targets}, key=lambda c: c or "")

    def start(self) -> None:
        """Load the open stories, subscribe to the watches, and once the cache has its first
        picture, continue or end the stories and open those the bot missed (on a thread of its
        own: nothing here waits for the API server)."""
        for row in self._store.open_node_threads():
            try:
                story = Story.model_validate(row.story)
            except ValidationError:
                log.warning("the stored failure story of %s (%s) is unreadable; left as it is",
                            row.node, row.since)
                continue
            self._threads[row.node] = _Thread(story, row.channel, row.ts)
        for context in self._contexts:
            self._cache.informer(context, None, "Node").subscribe(self._node)
        for context, namespace, _, _ in self._targets:
            self._cache.informer(context, namespace, "Pod").subscribe(self._pod)
        threading.Thread(target=self._catch_up, name="deckhand-node-threads",
                         daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _needed(self) -> list[Informer]:
        needed = [self._cache.informer(c, None, "Node") for c in self._contexts]
        for context, namespace, _, _ in self._targets:
            needed += [self._cache.informer(context, namespace, k) for k in ("Pod", "Deployment")]
        return needed

    def _catch_up(self) -> None:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        for informer in self._needed():
            while not informer.synced.wait(1.0):
                if self._stopped.is_set():
                    return
                if time.monotonic() > deadline:
                    # Better follow the nodes with part of the picture than not at all; what
                    # is still missing arrives as events.
                    log.warning("%r has not listed within %d s; node-failure messages start "
                                "without it", informer, CATCH_UP_SECONDS)
                    break
        with self._lock:
            if self._stopped.is_set():
                return
            continued = list(self._threads.values())
            present: set[str] = set()
            for context in self._contexts:
                for obj in self._cache.list(context, None, "Node"):
                    present.add(obj["metadata"]["name"])
                    self._first_sight(obj)
            if all(_listed(self._cache.informer(c, None, "Node")) for c in self._contexts):
                for thread in continued:
                    if thread.story.node not in present and self._is_open(thread):
                        self._end(thread, "removed")
            pods = [p for c, ns, _, _ in self._targets for p in self._cache.list(c, ns, "Pod")]
            for pod in pods:
                self._follow("ADDED", pod)
            for thread in list(self._threads.values()):
                if any(thread is t for t in continued) and self._settle(thread) is None:
                    self._unsettled.append(thread)
                # A continued story edits its message (or, if its post never completed, posts
                # it now); one opened above is on its way and its completion shows the latest.
                self._show(thread)
            self._caught_up = True
        # Pods missing from a namespace that had not listed are not known to be evicted: wait
        # (here, on this thread) until it has, then decide.
        while self._unsettled and not self._stopped.wait(1.0):
            with self._lock:
                for thread in list(self._unsettled):
                    settled = self._settle(thread) if self._is_open(thread) else False
                    if settled is not None:
                        self._unsettled.remove(thread)
                    if settled:
                        self._show(thread)

    def _is_open(self, thread: _Thread) -> bool:
        """``thread`` is still its node's open story (lock held)."""
        return self._threads.get(thread.story.node) is thread

    def _settle(self, thread: _Thread) -> bool | None:
        """Whether the continued story's pods were evicted while Deckhand was down (lock held):
        True if it says so now, False if not (or known already), None while their namespace
        has not listed (or its API server is unreachable): nothing is inferred from no
        picture."""
        story = thread.story
        if story.evicted_at is not None:
            return False
        labels = set(story.workloads.values())
        where = [(c, ns) for c, ns, w, e in self._targets if f"{w} in {e}" in labels]
        if not all(_listed(self._cache.informer(c, ns, "Pod")) for c, ns in where):
            return None
        names = {p["metadata"]["name"] for c, ns in where for p in self._cache.list(c, ns, "Pod")}
        if names & set(story.workloads):
            return False
        story.evicted_at = time.time()
        story.evicted_unseen = True
        return True

    # -- events (on the informers' threads: quick, never blocking) ----------------------------

    def _first_sight(self, node: Obj) -> None:
        """A node in the first picture after a start (lock held)."""
        h = node_health(node)
        thread = self._threads.get(h.name)
        if thread is not None and h.ready != "True" and \
                h.since not in (None, thread.story.transition()):
            # Its Ready condition changed while Deckhand was down (it came back and failed
            # again): the old story ends, this failure gets a message of its own.
            self._end(thread, "again")
            thread = None
        if thread is None:
            if h.ready != "True" and not self._open(h, node):
                return  # not stored: the node's next event tries again
        elif h.ready == "True":
            self._close(thread, h)
        else:
            self._mark(thread.story, node)  # still down: the stored story goes on
        self._ready[h.name] = h.ready

    def _node(self, kind: str, node: Obj) -> None:
        if kind == "BOOKMARK":
            return
        with self._lock:
            if not self._caught_up:
                return
            h = node_health(node)
            thread = self._threads.get(h.name)
            if kind == "DELETED":
                self._ready.pop(h.name, None)
                if thread is not None:
                    self._end(thread, "removed")
                return
            before = self._ready.get(h.name)
            if thread is None:
                if h.ready != "True" and before in ("True", None) and not self._open(h, node):
                    return  # not stored: not seen down yet, so the next event tries again
            elif h.ready == "True":
                self._close(thread, h)
            elif self._mark(thread.story, node):
                self._show(thread)
            self._ready[h.name] = h.ready

    def _mark(self, story: Story, node: Obj) -> bool:
        """Copy the node's Ready condition (while down), cordon and out-of-service taint into
        ``story``; True if changed."""
        h = node_health(node)
        now = (story.ready_now(), story.transition())
        if h.ready != "True" and (h.ready, h.since or now[1]) != now:
            story.current, story.current_since = h.ready, h.since or now[1]
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        oos = out_of_service(node)
        changed = (story.cordoned, story.out_of_service) != (cordoned, oos) or \
            (story.ready_now(), story.transition()) != now
        story.cordoned, story.out_of_service = cordoned, oos
        return changed

    def _open(self, h: NodeHealth, node: Obj) -> bool:
        """Open the story of this failure if the node runs managed pods; False only if the
        store could not record it (then nothing is shown and the next event tries again)."""
        workloads: dict[str, str] = {}
        toleration: int | None = None
        for context, namespace, w, e in self._targets:
            for pod in self._cache.list(context, namespace, "Pod"):
                if (pod.get("spec") or {}).get("nodeName") == h.name and \
                        self._owner(pod) == (w, e):
                    workloads[pod["metadata"]["name"]] = f"{w} in {e}"
                    toleration = toleration_seconds(pod["spec"])
        if not workloads:
            return True
        stopped = _epoch(h.since) or time.time()
        since = h.since or datetime.fromtimestamp(stopped, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        story = Story(node=h.name, since=since, stopped_at=stopped, state=h.ready,
                      workloads=workloads, toleration=toleration)
        self._mark(story, node)
        try:
            new = self._store.open_node_thread(h.name, since, self._channel, story.model_dump())
        except sqlite3.Error:
            log.exception("the failure of %s (%s) could not be stored; tried again on its next "
                          "event", h.name, since)
            return False
        if new:  # else this failure was told (and ended) before: never a second message
            self._threads[h.name] = thread = _Thread(story, self._channel)
            self._show(thread)
        return True

    def _close(self, thread: _Thread, h: NodeHealth) -> None:
        thread.story.back_at = _epoch(h.since) or time.time()
        # The story ends here: the node's next failure gets a message of its own.
        del self._threads[thread.story.node]
        self._show(thread)

    def _end(self, thread: _Thread, why: str) -> None:
        """End the story without the node coming back: "removed" or "again" (lock held)."""
        thread.story.ended = why
        del self._threads[thread.story.node]
        self._show(thread)

    def _owner(self, pod: Obj) -> tuple[str, str] | None:
        namespace = pod["metadata"].get("namespace")
        for context, ns, w, e in self._targets:
            if ns != namespace:
                continue
            d = self._cache.get(context, ns, "Deployment", self._config.deployment_of(w))
            if d is not None and matches(d["spec"].get("selector"),
                                         pod["metadata"].get("labels")):
                return w, e
        return None

    def _pod(self, kind: str, pod: Obj) -> None:
        if kind == "BOOKMARK":
            return
        with self._lock:
            if self._caught_up and self._threads:
                self._follow(kind, pod)

    def _follow(self, kind: str, pod: Obj) -> None:
        """One pod event against every open story (lock held)."""
        owner = self._owner(pod)
        if owner is None:
            return
        label = f"{owner[0]} in {owner[1]}"
        meta = pod["metadata"]
        name = meta["name"]
        where = (pod.get("spec") or {}).get("nodeName")
        created = _epoch(meta.get("creationTimestamp"))
        leaving = kind == "DELETED" or meta.get("deletionTimestamp") is not None
        for node, thread in self._threads.items():
            story = thread.story
            if label not in story.workloads.values() or story.done():
                continue
            changed = False
            if name in story.workloads:
                deleted = _evicted_at(pod)
                if (deleted is not None or kind == "DELETED") and story.evicted_at is None:
                    story.evicted_at = deleted or time.time()
                    changed = True
            elif leaving or created is None or created < story.stopped_at - 1:
                # Not a replacement: a replica that ran before the failure (creation times
                # have 1 s resolution), or one going away.
                continue
            elif where and where != node:
                if story.stuck.pop(label, None) is not None:
                    changed = True
                if story.replacements.get(label) != where:
                    story.replacements[label] = where
                    changed = True
                ready = _ready_since(pod)
                if ready is not None and label not in story.ready_at:
                    story.ready_at[label] = max(ready, story.stopped_at)
                    changed = True
            elif not where:
                reason = pending_reason(pod)
                if reason and story.stuck.get(label) != reason:
                    story.stuck[label] = reason
                    changed = True
            if changed and self._caught_up:
                self._show(thread)

    # -- used by the buttons (bot/intake/clicks.py) -----------------------------------------------

    def thread_of(self, node: str) -> tuple[str, str | None] | None:
        """(channel, ts) of the newest failure message of ``node`` (ts None while its post is
        on its way); None if Deckhand has no story of that node."""
        with self._lock:
            thread = self._threads.get(node)
            if thread is not None:
                return thread.channel, thread.ts
        row = self._store.latest_node_thread(node)
        return (row.channel, row.ts) if row is not None else None

    # -- Slack -----------------------------------------------------------------------------------

    def _show(self, thread: _Thread) -> None:
        """Store the story, then post it, or edit it once its message exists (lock held)."""
        story = thread.story
        self._store.save_node_story(story.node, story.since, story.model_dump(),
                                    closed=story.closed())
        text, blocks_ = blocks.node_failure(story)
        thread.shown_at = time.time()
        if thread.ts is not None:
            self._outbox.edit(thread.channel, thread.ts, text, blocks_, final=True,
                              on_done=self._edited(thread))
        elif not thread.posting:
            thread.posting = True
            thread.posted = (text, blocks_)
            self._outbox.post(thread.channel, text, blocks_, on_done=self._posted(thread))
        # else: posted, its ts not known yet: the post's completion edits in the latest text.

    def _edited(self, thread: _Thread) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock:
                if delivered.ok:
                    self._unsent.pop(id(thread), None)
                else:
                    log.warning("the failure message of %s was not updated (%s)",
                                thread.story.node, delivered.error)
                    self._unsent[id(thread)] = thread
        return done

    def resend(self, now: float | None = None) -> None:
        """Send again, at most every RESEND_SECONDS, the latest text of each story Slack did not
        take (called by the bot's sweep): after a Slack outage longer than the outbox's
        patience, the message still ends up showing where the failover is."""
        now = time.time() if now is None else now
        with self._lock:
            for key, thread in list(self._unsent.items()):
                if not thread.posting and now - thread.shown_at >= RESEND_SECONDS:
                    del self._unsent[key]  # before: a refusal at once puts it back
                    try:
                        self._show(thread)
                    except Exception:
                        self._unsent[key] = thread  # e.g. the store is locked: next sweep
                        raise

    def _posted(self, thread: _Thread) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock:
                thread.posting = False
                story = thread.story
                if not delivered.ok or not delivered.ts:
                    # resend() (or the next change, or the next start) posts it again.
                    log.warning("the failure message of %s was not posted (%s)", story.node,
                                delivered.error)
                    self._unsent[id(thread)] = thread
                    return
                self._unsent.pop(id(thread), None)
                thread.ts = delivered.ts
                self._store.set_node_thread_ts(story.node, story.since, delivered.ts)
                # Whatever happened meanwhile (even the node's return) is in the latest text.
                latest = blocks.node_failure(story)
                if latest != thread.posted:
                    self._outbox.edit(thread.channel, delivered.ts, *latest, final=True)
        return done
