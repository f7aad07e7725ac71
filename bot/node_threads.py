"""The node-failure thread: when a node that runs managed workloads stops being Ready, one message
in the operations channel (``failover.channel``), edited as the failover happens.

Fed by the cache's watches (Nodes and the managed namespaces' Pods; no polling): the node
stopped answering at T (its Ready condition's transition), its pods are evicted, the replacement
is scheduled on X, Ready at T', "failover completed in N s" (N from T, the cluster's own times),
or "stuck: <the scheduler's message>" while a replacement is Pending; and when the node is Ready
again, the message says so and the story ends. Every Slack write goes through the outbox.

The message carries buttons (bot/blocks.py ``node_failure``): Cordon, Drain (``/failover
drill``), and once the node stays down (its pods were evicted and it is still not Ready) "Mark
out of service", or "Back in service" while the node has the out-of-service taint. A click is
the same request as typing the command in the message's thread (bot/app.py), so it goes through
the gate like any other.

Persisted (the store's ``node_threads``): one row per failure, keyed by the node and its Ready
condition's transition time, with the message's ts and the story. A restart continues the
stories of nodes still down (same message, edits only), ends those whose node is Ready again,
and opens one for a node found down with no story for that failure. The ts is stored when the
post completes; a restart between queueing the first post and Slack's answer posts it once more
(the outbox is at-least-once), never more for the same failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from deckhand.bot import blocks
from deckhand.bot.cache import ClusterCache, Informer, matches
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.failover import (
    OUT_OF_SERVICE,
    NodeHealth,
    node_health,
    pending_reason,
    toleration_seconds,
)
from deckhand.bot.outbox import Delivered, Outbox
from deckhand.bot.store import Store

log = logging.getLogger("deckhand.failover")

Obj = dict[str, Any]

#: How long the start waits for the cache's first lists before comparing with the stored stories.
CATCH_UP_SECONDS = 60

#: What each button of the message asks for: (command, its text); ``{node}`` is the button's
#: value. The click goes through the gate exactly as if the command were typed in the thread.
NODE_COMMANDS: dict[str, tuple[str, str]] = {
    blocks.ACTION_NODE_CORDON: ("cordon", "{node}"),
    blocks.ACTION_NODE_DRAIN: ("failover", "drill {node}"),
    blocks.ACTION_NODE_OUT_OF_SERVICE: ("failover", "out-of-service {node}"),
    blocks.ACTION_NODE_IN_SERVICE: ("failover", "in-service {node}"),
}


def node_command(action_id: str, node: str) -> tuple[str, str]:
    """The command a button of the message stands for, e.g. ("failover", "drill w1").

    Raises:
        KeyError: not a button of the node-failure message.
    """
    verb, text = NODE_COMMANDS[action_id]
    return verb, text.format(node=node)


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%H:%M:%S")


def _ready_since(pod: Obj) -> float | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return _epoch(c.get("lastTransitionTime"))
    return None


def _evicted_at(pod: Obj) -> float | None:
    """When the pod's deletion was asked for. Its deletionTimestamp is when the grace period
    ends (the deletion plus deletionGracePeriodSeconds), not when it was evicted."""
    meta = pod["metadata"]
    until = _epoch(meta.get("deletionTimestamp"))
    if until is None:
        return None
    return until - float(meta.get("deletionGracePeriodSeconds") or 0)


def _out_of_service(node: Obj) -> bool:
    return any(t.get("key") == OUT_OF_SERVICE for t in (node.get("spec") or {}).get("taints") or [])


class Story(BaseModel):
    """What one failure message shows; pure, so it is unit-tested without Slack or a cluster.
    Stored as JSON in the store's ``node_threads`` row of the failure."""

    node: str
    since: str
    """The Ready condition's lastTransitionTime (as the API serves it): with the node, the key
    of this failure."""
    stopped_at: float
    state: str
    """The node's Ready condition: "False" (NotReady) or "Unknown" (stopped answering)."""
    workloads: dict[str, str]
    """pod name on the failed node -> "workload in env"."""
    toleration: int | None
    evicted_at: float | None = None
    replacements: dict[str, str] = Field(default_factory=dict)
    """"workload in env" -> the node its replacement was scheduled on."""
    ready_at: dict[str, float] = Field(default_factory=dict)
    stuck: dict[str, str] = Field(default_factory=dict)
    back_at: float | None = None
    cordoned: bool = False
    out_of_service: bool = False
    """The node carries the ``node.kubernetes.io/out-of-service`` taint."""

    def done(self) -> bool:
        return set(self.ready_at) >= set(self.workloads.values())

    def text(self) -> str:
        what = "stopped answering" if self.state == "Unknown" else "turned NotReady"
        lines = [f":rotating_light: *{self.node}* {what} at {_clock(self.stopped_at)}; it runs "
                 + ", ".join(sorted(set(self.workloads.values())))]
        if self.evicted_at is not None:
            lines.append(f"its pods were evicted at {_clock(self.evicted_at)}")
        elif self.toleration is not None:
            lines.append(f"its pods are evicted at {_clock(self.stopped_at + self.toleration)} "
                         f"(after {self.toleration} s)")
        for w in sorted(set(self.workloads.values())):
            if w in self.replacements:
                lines.append(f"{w}: replacement scheduled on {self.replacements[w]}")
            if w in self.ready_at:
                lines.append(f"{w}: Ready at {_clock(self.ready_at[w])}")
            elif w in self.stuck:
                lines.append(f"{w}: stuck: {self.stuck[w]}")
        if self.cordoned:
            lines.append(f"{self.node} is cordoned")
        if self.out_of_service:
            lines.append(f"{self.node} is marked out of service ({OUT_OF_SERVICE})")
        if self.done():
            last = max(self.ready_at.values())
            lines.append(f"*failover completed in {round(last - self.stopped_at)} s*")
        if self.back_at is not None:
            lines.append(f"{self.node} is Ready again since {_clock(self.back_at)}")
        return "\n".join(lines)

    def offers(self) -> list[str]:
        """The buttons (action ids) this state offers. Cordon until the node is cordoned; Drain
        while its pods are still bound to it; once they were evicted and the node is still
        down, Mark out of service; Back in service while it carries the taint (also after the
        node came back: the taint keeps everything off it)."""
        if self.back_at is not None:
            return [blocks.ACTION_NODE_IN_SERVICE] if self.out_of_service else []
        out: list[str] = []
        if not self.cordoned:
            out.append(blocks.ACTION_NODE_CORDON)
        if self.evicted_at is None:
            out.append(blocks.ACTION_NODE_DRAIN)
        if self.out_of_service:
            out.append(blocks.ACTION_NODE_IN_SERVICE)
        elif self.evicted_at is not None:
            out.append(blocks.ACTION_NODE_OUT_OF_SERVICE)
        return out


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
        self._caught_up = False
        """The first picture (after a start) was compared with the stored stories; events
        before that are left to it."""
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
            continued = set(self._threads)
            for context in self._contexts:
                for obj in self._cache.list(context, None, "Node"):
                    self._first_sight(obj)
            pods = [p for c, ns, _, _ in self._targets for p in self._cache.list(c, ns, "Pod")]
            for pod in pods:
                self._follow("ADDED", pod)
            names = {p["metadata"]["name"] for p in pods}
            for node, thread in self._threads.items():
                story = thread.story
                if node in continued and story.evicted_at is None and \
                        not names & set(story.workloads):
                    story.evicted_at = time.time()  # deleted while Deckhand was down
                # A continued story edits its message (or, if its post never completed, posts
                # it now); one opened above is on its way and its completion shows the latest.
                self._show(thread)
            self._caught_up = True

    # -- events (on the informers' threads: quick, never blocking) ----------------------------

    def _first_sight(self, node: Obj) -> None:
        """A node in the first picture after a start (lock held)."""
        h = node_health(node)
        self._ready[h.name] = h.ready
        thread = self._threads.get(h.name)
        if thread is None:
            if h.ready != "True":
                self._open(h, node)  # down since before the start: unless already told
        elif h.ready == "True":
            self._close(thread, h)
        else:
            # Still down: the stored story goes on. (Had the node come back and failed again
            # while Deckhand was down, this failure continues the old message too.)
            self._mark(thread.story, node)

    def _node(self, kind: str, node: Obj) -> None:
        if kind in ("BOOKMARK", "DELETED"):
            return
        with self._lock:
            if not self._caught_up:
                return
            h = node_health(node)
            before = self._ready.get(h.name)
            self._ready[h.name] = h.ready
            thread = self._threads.get(h.name)
            if thread is None:
                if h.ready != "True" and before in ("True", None):
                    self._open(h, node)
            elif h.ready == "True":
                self._close(thread, h)
            elif self._mark(thread.story, node):
                self._show(thread)

    def _mark(self, story: Story, node: Obj) -> bool:
        """Copy the node's cordon and out-of-service taint into ``story``; True if changed."""
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        oos = _out_of_service(node)
        changed = (story.cordoned, story.out_of_service) != (cordoned, oos)
        story.cordoned, story.out_of_service = cordoned, oos
        return changed

    def _open(self, h: NodeHealth, node: Obj) -> None:
        workloads: dict[str, str] = {}
        toleration: int | None = None
        for context, namespace, w, e in self._targets:
            for pod in self._cache.list(context, namespace, "Pod"):
                if (pod.get("spec") or {}).get("nodeName") == h.name and \
                        self._owner(pod) == (w, e):
                    workloads[pod["metadata"]["name"]] = f"{w} in {e}"
                    toleration = toleration_seconds(pod["spec"])
        if not workloads:
            return
        stopped = _epoch(h.since) or time.time()
        since = h.since or datetime.fromtimestamp(stopped, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        story = Story(node=h.name, since=since, stopped_at=stopped, state=h.ready,
                      workloads=workloads, toleration=toleration)
        self._mark(story, node)
        if not self._store.open_node_thread(h.name, since, self._channel, story.model_dump()):
            return  # this failure was told (and ended) before: never a second message
        self._threads[h.name] = thread = _Thread(story, self._channel)
        self._show(thread)

    def _close(self, thread: _Thread, h: NodeHealth) -> None:
        thread.story.back_at = _epoch(h.since) or time.time()
        # The story ends here: the node's next failure gets a message of its own.
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
        name = pod["metadata"]["name"]
        where = (pod.get("spec") or {}).get("nodeName")
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
            elif where and where != node:
                if story.replacements.get(label) != where:
                    story.replacements[label] = where
                    changed = True
                ready = _ready_since(pod)
                if ready is not None and label not in story.ready_at:
                    story.ready_at[label] = ready
                    changed = True
            elif not where:
                reason = pending_reason(pod)
                if reason and story.stuck.get(label) != reason:
                    story.stuck[label] = reason
                    changed = True
            if changed and self._caught_up:
                self._show(thread)

    # -- used by the buttons (bot/app.py) --------------------------------------------------------

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
                                    closed=story.back_at is not None)
        text, blocks_ = blocks.node_failure(story)
        if thread.ts is not None:
            self._outbox.edit(thread.channel, thread.ts, text, blocks_, final=True)
        elif not thread.posting:
            thread.posting = True
            thread.posted = (text, blocks_)
            self._outbox.post(thread.channel, text, blocks_, on_done=self._posted(thread))
        # else: posted, its ts not known yet: the post's completion edits in the latest text.

    def _posted(self, thread: _Thread) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock:
                thread.posting = False
                story = thread.story
                if not delivered.ok or not delivered.ts:
                    # The next change, or the next start, posts it again.
                    log.warning("the failure message of %s was not posted (%s)", story.node,
                                delivered.error)
                    return
                thread.ts = delivered.ts
                self._store.set_node_thread_ts(story.node, story.since, delivered.ts)
                # Whatever happened meanwhile (even the node's return) is in the latest text.
                latest = blocks.node_failure(story)
                if latest != thread.posted:
                    self._outbox.edit(thread.channel, delivered.ts, *latest, final=True)
        return done
