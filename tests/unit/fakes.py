"""Small stand-ins for the gate's collaborators, shared by the unit tests of pure logic.

They satisfy the Protocols in bot/intake/gate.py (``Actor``, ``Decision``, ``PolicyLike``); the
behaviour under test is the gate's and the pipeline's own, never these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Who:
    """A Slack user clicking or asking in a channel (bot/intake/gate.py ``Actor``)."""

    user_id: str = "U1"
    team_id: str = "T1"
    channel_id: str | None = "C1"


@dataclass(frozen=True)
class Decision:
    """A policy's answer (bot/intake/gate.py ``Decision``); allowed unless told otherwise."""

    allowed: bool = True
    reason: str = ""


class AllowAll:
    """A policy that allows everyone everything, for tests about what happens after the gate."""

    def check(self, actor: Any, action: str, environment: str, workload: str) -> Decision:
        return Decision()

    def may_approve(self, actor: Any, environment: str, workload: str) -> Decision:
        return Decision()
