"""What one node-failure message shows: pure, so it is unit-tested without Slack or a cluster.

The node stopped answering at T (its Ready condition's transition), its pods are evicted, the
replacement is scheduled on X, Ready at T', "failover completed in N s" (N from T, the cluster's
own times), or "stuck: <the scheduler's message>" while a replacement is Pending; and when the
node is Ready again, or the Node is deleted, the message says so and the story ends.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from deckhand.bot.failover import buttons
from deckhand.bot.failover.verdict import OUT_OF_SERVICE


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%H:%M:%S")


class Story(BaseModel):
    """What one failure message shows; pure, so it is unit-tested without Slack or a cluster.
    Stored as JSON in the store's ``node_threads`` row of the failure."""

    node: str
    since: str
    """The Ready condition's lastTransitionTime (as the API serves it): with the node, the key
    of this failure."""
    stopped_at: float
    state: str
    """The node's Ready condition when the failure began: "False" (NotReady) or "Unknown"
    (stopped answering)."""
    current: str | None = None
    """The node's Ready condition now, once it changed while the node stayed down ("False" <->
    "Unknown"); None: still ``state``."""
    current_since: str | None = None
    """When the Ready condition took its current status (lastTransitionTime); None: ``since``."""
    workloads: dict[str, str]
    """pod name on the failed node -> "workload in env"."""
    toleration: int | None
    evicted_at: float | None = None
    evicted_unseen: bool = False
    """Its pods were gone when Deckhand started: evicted while it was down (no time known)."""
    replacements: dict[str, str] = Field(default_factory=dict)
    """"workload in env" -> the node its replacement was scheduled on."""
    ready_at: dict[str, float] = Field(default_factory=dict)
    stuck: dict[str, str] = Field(default_factory=dict)
    back_at: float | None = None
    cordoned: bool = False
    out_of_service: bool = False
    """The node carries the ``node.kubernetes.io/out-of-service`` taint."""
    ended: str | None = None
    """Why the story ended while the node was not Ready: "removed" (the Node was deleted) or
    "again" (its Ready condition changed while Deckhand was down: a new failure)."""

    def ready_now(self) -> str:
        """The node's Ready condition as last seen while it was down."""
        return self.current or self.state

    def transition(self) -> str:
        """The lastTransitionTime of that condition (a restart compares it with the node's)."""
        return self.current_since or self.since

    def closed(self) -> bool:
        """The story ended: the node is Ready again, gone, or failed anew."""
        return self.back_at is not None or self.ended is not None

    def done(self) -> bool:
        return set(self.ready_at) >= set(self.workloads.values())

    def text(self) -> str:
        what = "stopped answering" if self.state == "Unknown" else "turned NotReady"
        lines = [f":rotating_light: *{self.node}* {what} at {_clock(self.stopped_at)}; it runs "
                 + ", ".join(sorted(set(self.workloads.values())))]
        if self.ready_now() != self.state:
            at = _clock(_epoch(self.current_since) or self.stopped_at)
            lines.append(f"it stopped answering at {at}" if self.ready_now() == "Unknown"
                         else f"its kubelet reports NotReady since {at}")
        if self.evicted_unseen:
            lines.append("its pods were evicted while Deckhand was down")
        elif self.evicted_at is not None:
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
        if self.ended == "removed":
            lines.append(f"{self.node} was removed from the cluster")
        elif self.ended == "again":
            lines.append(f"{self.node} came back (or changed state) while Deckhand was down; its "
                         "new failure has a message of its own")
        return "\n".join(lines)

    def offers(self) -> list[str]:
        """The buttons (action ids) this state offers. Cordon until the node is cordoned; Drain
        while its pods are still bound to it; once they were evicted and the node is still
        down and not answering (Ready "Unknown": presumably off; never "False", whose kubelet
        runs), Mark out of service; Back in service while it carries the taint (also after the
        node came back: the taint keeps everything off it). None once the Node was deleted."""
        if self.ended is not None:
            return []
        if self.back_at is not None:
            return [buttons.ACTION_NODE_IN_SERVICE] if self.out_of_service else []
        out: list[str] = []
        if not self.cordoned:
            out.append(buttons.ACTION_NODE_CORDON)
        if self.evicted_at is None:
            out.append(buttons.ACTION_NODE_DRAIN)
        if self.out_of_service:
            out.append(buttons.ACTION_NODE_IN_SERVICE)
        elif self.evicted_at is not None and self.ready_now() == "Unknown":
            out.append(buttons.ACTION_NODE_OUT_OF_SERVICE)
        return out
