"""Alert groups (bot/alerts/): the thread each group lives in, the alerts it showed, and the
silences Deckhand made for it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from deckhand.bot.store.db import Database


class AlertGroup(BaseModel):
    """One Alertmanager alert group and its Slack thread (bot/alerts/threads.py)."""

    key: str
    channel: str
    ts: str | None
    """The root message's ts; None until Slack returned it."""
    status: str
    data: dict[str, Any]
    """The group's last notification, as bot/alerts/threads.py renders it."""
    created_at: float
    updated_at: float



class AlertSilence(BaseModel):
    id: str
    """Alertmanager's silence ID."""
    group_key: str
    created_by: str
    ends_at: float
    expired_by: str | None
    created_at: float



class AlertRows(Database):
    """The ``alert_groups``, ``alerts_seen`` and ``alert_silences`` tables."""

    def alert_group(self, key: str) -> AlertGroup | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_groups WHERE key = ?", (key,)).fetchone()
        return _alert_group(row) if row is not None else None

    def save_alert_group(self, key: str, channel: str, status: str, data: dict[str, Any],
                         alerts: Iterable[tuple[str, str, str]]) -> tuple[AlertGroup, bool,
                                                                          list[str], list[str]]:
        """Record a notification of group ``key``: its status, its data, and its alerts as
        (fingerprint, startsAt, status).

        Returns, from one transaction: the group as stored now, whether the group is new, and the
        fingerprints whose firing and whose resolve were not recorded before (what the thread
        has not shown yet). A group keeps the channel and root it was first given.
        """
        now = self._clock()
        fired: list[str] = []
        resolved: list[str] = []
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO alert_groups (key, channel, ts, status, data, created_at, "
                "updated_at) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                (key, channel, status, json.dumps(data), now, now))
            new = cur.rowcount == 1
            if not new:
                db.execute("UPDATE alert_groups SET status = ?, data = ?, updated_at = ? "
                           "WHERE key = ?", (status, json.dumps(data), now, key))
            for fingerprint, starts_at, alert_status in alerts:
                row = db.execute("SELECT status FROM alerts_seen WHERE group_key = ? AND "
                                 "fingerprint = ? AND starts_at = ?",
                                 (key, fingerprint, starts_at)).fetchone()
                if row is None:
                    db.execute("INSERT INTO alerts_seen (group_key, fingerprint, starts_at, "
                               "status) VALUES (?, ?, ?, ?)",
                               (key, fingerprint, starts_at, alert_status))
                    fired.append(fingerprint)
                    if alert_status == "resolved":
                        resolved.append(fingerprint)
                elif row["status"] != "resolved" and alert_status == "resolved":
                    db.execute("UPDATE alerts_seen SET status = 'resolved' WHERE group_key = ? "
                               "AND fingerprint = ? AND starts_at = ?",
                               (key, fingerprint, starts_at))
                    resolved.append(fingerprint)
            row = db.execute("SELECT * FROM alert_groups WHERE key = ?", (key,)).fetchone()
        return _alert_group(row), new, fired, resolved

    def set_alert_root(self, key: str, ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE alert_groups SET ts = ? WHERE key = ?", (ts, key))

    def alert_groups_without_root(self) -> list[AlertGroup]:
        """Groups whose root was queued but never confirmed (the bot stopped first)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM alert_groups INDEXED BY alert_groups_rootless "
                                    "WHERE ts IS NULL ORDER BY created_at").fetchall()
        return [_alert_group(r) for r in rows]

    def prune_alert_groups(self, older_than: float) -> int:
        """Forget resolved groups last notified before ``older_than`` (with what they showed and
        their silences); return how many. The same group firing again later starts a new
        thread."""
        with self._tx() as db:
            keys = [r["key"] for r in db.execute(
                "SELECT key FROM alert_groups WHERE status = 'resolved' AND updated_at < ?",
                (older_than,))]
            for key in keys:
                db.execute("DELETE FROM alerts_seen WHERE group_key = ?", (key,))
                db.execute("DELETE FROM alert_silences WHERE group_key = ?", (key,))
                db.execute("DELETE FROM alert_groups WHERE key = ?", (key,))
            return len(keys)

    def alert_group_by_root(self, channel: str, ts: str) -> AlertGroup | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_groups WHERE channel = ? AND ts = ?",
                                   (channel, ts)).fetchone()
        return _alert_group(row) if row is not None else None

    def add_silence(self, silence_id: str, group_key: str, created_by: str,
                    ends_at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO alert_silences (id, group_key, created_by, ends_at, "
                       "expired_by, created_at) VALUES (?, ?, ?, ?, NULL, ?)",
                       (silence_id, group_key, created_by, ends_at, self._clock()))

    def active_silence(self, group_key: str) -> AlertSilence | None:
        """The group's newest silence that was not expired through Deckhand and has not ended."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM alert_silences WHERE group_key = ? AND expired_by IS NULL AND "
                "ends_at > ? ORDER BY created_at DESC LIMIT 1",
                (group_key, self._clock())).fetchone()
        return AlertSilence(**dict(row)) if row is not None else None

    def expire_silence(self, silence_id: str, by: str) -> bool:
        """Mark a silence expired; True if this call did (a second click finds it done)."""
        with self._tx() as db:
            return db.execute("UPDATE alert_silences SET expired_by = ? WHERE id = ? AND "
                              "expired_by IS NULL", (by, silence_id)).rowcount == 1


def _alert_group(row: sqlite3.Row) -> AlertGroup:
    return AlertGroup(**{**dict(row), "data": json.loads(row["data"])})


