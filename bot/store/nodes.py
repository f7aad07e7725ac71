"""Node-failure threads (bot/failover/threads.py): one row per failure, continued after a
restart."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pydantic import BaseModel

from deckhand.bot.store.db import Database


class NodeThread(BaseModel):
    """One node failure (the node + its Ready condition's transition) and its message
    (bot/failover/threads.py)."""

    node: str
    since: str
    """The Ready condition's lastTransitionTime when the node stopped being Ready."""
    channel: str
    ts: str | None
    """The message's ts; None until Slack returned it."""
    story: dict[str, Any]
    """What the message shows (bot/failover/threads.py ``Story``)."""
    closed_at: float | None
    """When the node was seen Ready again (the story ended); None while it is down."""
    created_at: float
    updated_at: float



class NodeThreadRows(Database):
    """The ``node_threads`` table."""

    def open_node_thread(self, node: str, since: str, channel: str,
                         story: dict[str, Any]) -> bool:
        """Record a new failure of ``node`` (Ready condition changed at ``since``); False if this
        failure already has a row (open or closed): it must not get a second message."""
        now = self._clock()
        with self._tx() as db:
            return db.execute(
                "INSERT OR IGNORE INTO node_threads (node, since, channel, ts, story, closed_at, "
                "created_at, updated_at) VALUES (?, ?, ?, NULL, ?, NULL, ?, ?)",
                (node, since, channel, json.dumps(story), now, now)).rowcount == 1

    def save_node_story(self, node: str, since: str, story: dict[str, Any], *,
                        closed: bool = False) -> None:
        """Store what the message of this failure shows now; ``closed``: the story ended."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE node_threads SET story = ?, updated_at = ?, closed_at = CASE WHEN "
                       "? THEN COALESCE(closed_at, ?) ELSE closed_at END WHERE node = ? AND "
                       "since = ?", (json.dumps(story), now, closed, now, node, since))

    def set_node_thread_ts(self, node: str, since: str, ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE node_threads SET ts = ? WHERE node = ? AND since = ?",
                       (ts, node, since))

    def node_thread(self, node: str, since: str) -> NodeThread | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM node_threads WHERE node = ? AND since = ?",
                                   (node, since)).fetchone()
        return _node_thread(row) if row is not None else None

    def open_node_threads(self) -> list[NodeThread]:
        """The failures whose node was not seen Ready again, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM node_threads INDEXED BY node_threads_open "
                                    "WHERE closed_at IS NULL ORDER BY created_at").fetchall()
        return [_node_thread(r) for r in rows]

    def latest_node_thread(self, node: str) -> NodeThread | None:
        """The newest failure of ``node``, open or closed."""
        with self._lock:
            row = self._db.execute("SELECT * FROM node_threads WHERE node = ? "
                                   "ORDER BY created_at DESC LIMIT 1", (node,)).fetchone()
        return _node_thread(row) if row is not None else None

    def prune_node_threads(self, older_than: float) -> int:
        """Forget failures that ended before ``older_than``; return how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM node_threads WHERE closed_at IS NOT NULL AND "
                              "closed_at < ?", (older_than,)).rowcount


def _node_thread(row: sqlite3.Row) -> NodeThread:
    return NodeThread(**{**dict(row), "story": json.loads(row["story"])})


