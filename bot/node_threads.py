"""The node-failure thread: when a node that runs managed workloads stops being Ready, one message
in the operations channel (``failover.channel``), edited as the failover happens.

Fed by the cache's watches (Nodes and the managed namespaces' Pods; no polling): the node
stopped answering at T (its Ready condition's transition), its pods are evicted, the replacement
is scheduled on X, Ready at T', "failover completed in N s" (N from T, the cluster's own times),
or "stuck: <the scheduler's message>" while a replacement is Pending; and when the node is Ready
again, the message says so. Every Slack write goes through the outbox.

Not persisted yet: a restart of the bot during a failover does not continue the message.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deckhand.bot.cache import ClusterCache, matches
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.failover import node_health, toleration_seconds
from deckhand.bot.outbox import Delivered, Outbox

log = logging.getLogger("deckhand.failover")

Obj = dict[str, Any]


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


def _unscheduled_reason(pod: Obj) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return str(c.get("message") or c.get("reason") or "not scheduled")
    return None


@dataclass
class Story:
    """What one failure thread shows; pure, so it is unit-tested without Slack or a cluster."""

    node: str
    stopped_at: float
    state: str
    """The node's Ready condition: "False" (NotReady) or "Unknown" (stopped answering)."""
    workloads: dict[str, str]
    """pod name on the failed node -> "workload in env"."""
    toleration: int | None
    evicted_at: float | None = None
    replacements: dict[str, str] = field(default_factory=dict)
    """"workload in env" -> the node its replacement was scheduled on."""
    ready_at: dict[str, float] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)
    back_at: float | None = None

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
        if self.done():
            last = max(self.ready_at.values())
            lines.append(f"*failover completed in {round(last - self.stopped_at)} s*")
        if self.back_at is not None:
            lines.append(f"{self.node} is Ready again since {_clock(self.back_at)}")
        return "\n".join(lines)


class NodeThreads:
    """Watches Nodes and managed Pods through the cache and keeps one Story per failed node."""

    def __init__(self, config: DeckhandConfig, cache: ClusterCache, outbox: Outbox,
                 channel: str) -> None:
        self._config = config
        self._cache = cache
        self._outbox = outbox
        self._channel = channel
        self._lock = threading.Lock()
        self._ready: dict[str, str] = {}
        self._stories: dict[str, Story] = {}
        self._ts: dict[str, str] = {}
        self._posting: set[int] = set()
        """Stories whose first post is on its way (by id): later changes wait for its ts."""
        self._targets = [(config.environments[e].context, config.namespace_of(w, e), w, e)
                         for w, spec in config.workloads.items() for e in spec.environments]

    def start(self) -> None:
        for context in sorted({t[0] for t in self._targets}, key=lambda c: c or ""):
            self._cache.informer(context, None, "Node").subscribe(self._node)
        for context, namespace, _, _ in self._targets:
            self._cache.informer(context, namespace, "Pod").subscribe(self._pod)

    # -- events (on the informers' threads: quick, never blocking) ----------------------------

    def _node(self, kind: str, node: Obj) -> None:
        if kind == "BOOKMARK":
            return
        h = node_health(node)
        with self._lock:
            before = self._ready.get(h.name)
            self._ready[h.name] = h.ready
            story = self._stories.get(h.name)
            if before == "True" and h.ready != "True" and story is None:
                self._open(h.name, h.ready, _epoch(h.since))
            elif h.ready == "True" and story is not None and before != "True":
                story.back_at = _epoch(h.since)
                self._show(h.name)
                # The story ends here: the node's next failure gets a message of its own.
                del self._stories[h.name]
                self._ts.pop(h.name, None)

    def _open(self, name: str, state: str, since: float | None) -> None:
        workloads: dict[str, str] = {}
        toleration: int | None = None
        for context, namespace, w, e in self._targets:
            for pod in self._cache.list(context, namespace, "Pod"):
                if (pod.get("spec") or {}).get("nodeName") == name and self._owner(pod) == (w, e):
                    workloads[pod["metadata"]["name"]] = f"{w} in {e}"
                    toleration = toleration_seconds(pod["spec"])
        if not workloads:
            return
        self._stories[name] = Story(name, since or time.time(), state, workloads, toleration)
        self._show(name)

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
            if not self._stories:
                return
            owner = self._owner(pod)
            if owner is None:
                return
            label = f"{owner[0]} in {owner[1]}"
            name = pod["metadata"]["name"]
            where = (pod.get("spec") or {}).get("nodeName")
            for node, story in self._stories.items():
                if label not in story.workloads.values() or story.done():
                    continue
                changed = False
                if name in story.workloads:
                    deleted = _epoch(pod["metadata"].get("deletionTimestamp"))
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
                    reason = _unscheduled_reason(pod)
                    if reason and story.stuck.get(label) != reason:
                        story.stuck[label] = reason
                        changed = True
                if changed:
                    self._show(node)

    # -- Slack -----------------------------------------------------------------------------------

    def _show(self, node: str) -> None:
        """Post the story, or edit it once its message exists (lock held)."""
        story = self._stories[node]
        ts = self._ts.get(node)
        if ts is not None:
            self._outbox.edit(self._channel, ts, story.text(), final=True)
        elif id(story) not in self._posting:
            self._posting.add(id(story))
            self._outbox.post(self._channel, story.text(), on_done=self._posted(node, story))
        # else: posted, its ts not known yet: the post's completion edits in the latest text.

    def _posted(self, node: str, story: Story) -> Any:
        def done(delivered: Delivered) -> None:
            with self._lock:
                self._posting.discard(id(story))
                if not delivered.ts:
                    log.warning("the failure message of %s was not posted", node)
                    return
                if self._stories.get(node) is story:
                    self._ts[node] = delivered.ts
                # Whatever happened meanwhile (even the node's return) is in the latest text.
                self._outbox.edit(self._channel, delivered.ts, story.text(), final=True)
        return done
