"""Durable state: requests and their approvals, and the audit log, in one SQLite file.

Everything that must survive a restart of the bot lives here. Each state change of a request is an
atomic compare-and-set (``UPDATE ... WHERE id = ? AND state IN (...)``), so when several threads
(double clicks, two approvers, a redelivered envelope) race for the same transition exactly one
wins and the others see that they lost. A transition that must not happen after the request's
lifetime (a Confirm, an approval, the start of an execution) also puts the expiry into the same
``WHERE``, so no clock read between a check and the write can let an expired request through.
SQLite runs in WAL mode; one connection is shared behind a lock, which is plenty for a chat bot's
write rate and keeps transactions simple.

The file carries its schema version in ``PRAGMA user_version``. Opening a file runs, in one
transaction, every migration in :data:`_MIGRATIONS` newer than the file's version, so a new
release starts on the database the previous one left; a file from a newer release than this code
knows is refused rather than misread. Files written before versioning existed carry
``user_version`` 0 but already have the tables: they are version 1.

The store knows nothing about Slack or Kubernetes: rows in, rows out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class State(StrEnum):
    """Where a request is in its life. bot/approvals.py draws the diagram; in short::

        pending -> confirmed -> approved -> executing -> following -> succeeded / failed / applied
                                                      -> succeeded / failed (nothing to follow)
        pending / confirmed -> cancelled / rejected / expired;  approved -> cancelled / expired

    Open states take clicks; ``approved``, ``executing`` and ``following`` belong to the
    execution; the rest are final: nothing moves a request out of them.
    """

    PENDING = "pending"          # waiting for the requester's Confirm
    CONFIRMED = "confirmed"      # confirmed; waiting for approvals
    APPROVED = "approved"        # confirmed and approved; about to execute
    EXECUTING = "executing"      # applying the change; a restart here fails it as interrupted
    FOLLOWING = "following"      # applied; following the rollout (a restart resumes following)
    SUCCEEDED = "succeeded"      # final: done (and, if followed, rolled out)
    FAILED = "failed"            # final: the apply or the rollout failed, or was interrupted
    APPLIED = "applied"          # final: applied, but following stopped before the rollout
                                 # finished (an operator-set cap); not a failure
    CANCELLED = "cancelled"      # final: by the requester, or closed because they lost the right
    REJECTED = "rejected"        # final: an approver said no
    EXPIRED = "expired"          # final: its lifetime ended before it could execute


OPEN_STATES = (State.PENDING, State.CONFIRMED)
"""States in which the buttons still work."""

FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.APPLIED, State.CANCELLED, State.REJECTED,
                State.EXPIRED)
"""States nothing moves a request out of."""

ANNOUNCED_STATES = (State.SUCCEEDED, State.FAILED, State.APPLIED)
"""The final states of an execution. Their final message and the requester's thread reply must
reach Slack, so :meth:`Store.unnotified` tracks them until :meth:`Store.mark_notice` records the
outcome. A request closed without executing (cancelled, rejected, expired) is not tracked: the
click or sweep that closed it renders it, and if that edit is lost the worst left behind is a
button that answers "already cancelled"."""

NOTICE_DELIVERED = "delivered"
"""``Request.notice`` once the final message and thread reply went through; the other value is
``"refused: <Slack's error>"``."""


class StoreError(Exception):
    """The database cannot be used by this version of Deckhand (e.g. a newer schema)."""


class Request(BaseModel):
    """One mutating request, from the slash command (or alert button) to its outcome."""

    id: str
    verb: str
    args: dict[str, Any]
    workload: str
    environment: str
    namespace: str
    requester: str
    team: str
    channel: str
    message_ts: str | None = None
    thread_ts: str | None = None
    state: State = State.PENDING
    plan: dict[str, Any] = Field(default_factory=dict)
    """What the command planned: summary lines and the target version it was made against."""
    approvals_required: int = 0
    approvers: list[str] = Field(default_factory=list)
    created_at: float
    expires_at: float
    updated_at: float
    result: dict[str, Any] | None = None
    followed_since: float | None = None
    """When following the rollout began (the request entered ``following``); None otherwise."""
    notice: str | None = None
    """Delivery of the final Slack notification: None (not yet), ``"delivered"``, or
    ``"refused: <Slack's error>"``. See :data:`ANNOUNCED_STATES`."""


class AlertGroup(BaseModel):
    """One Alertmanager alert group and its Slack thread (bot/alerts.py)."""

    key: str
    channel: str
    ts: str | None
    """The root message's ts; None until Slack returned it."""
    status: str
    data: dict[str, Any]
    """The group's last notification, as bot/alerts.py renders it."""
    created_at: float
    updated_at: float


class NodeThread(BaseModel):
    """One node failure (the node + its Ready condition's transition) and its message
    (bot/node_threads.py)."""

    node: str
    since: str
    """The Ready condition's lastTransitionTime when the node stopped being Ready."""
    channel: str
    ts: str | None
    """The message's ts; None until Slack returned it."""
    story: dict[str, Any]
    """What the message shows (bot/node_threads.py ``Story``)."""
    closed_at: float | None
    """When the node was seen Ready again (the story ended); None while it is down."""
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


class AuditEntry(BaseModel):
    seq: int
    at: float
    event: str
    request_id: str | None
    user_id: str | None
    team_id: str | None
    action: str | None
    args: dict[str, Any] | None
    environment: str | None
    workload: str | None
    result: str | None
    detail: str | None


# -- schema and migrations ----------------------------------------------------------------------
#
# Each migration is (the version it produces, SQL or a function of the connection); they run in
# order, in one transaction with the version bump. A fresh file is built by running them all, so
# a new file and a migrated one cannot drift apart. Never edit a released migration: append one.
# Migrations spell states as literals, because the State enum may change after them.

_V1 = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    verb TEXT NOT NULL,
    args TEXT NOT NULL,
    workload TEXT NOT NULL,
    environment TEXT NOT NULL,
    namespace TEXT NOT NULL,
    requester TEXT NOT NULL,
    team TEXT NOT NULL,
    channel TEXT NOT NULL,
    message_ts TEXT,
    thread_ts TEXT,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, expires_at);
CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (request_id, user_id)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT,
    user_id TEXT,
    team_id TEXT,
    action TEXT,
    args TEXT,
    environment TEXT,
    workload TEXT,
    result TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""
"""Schema version 1: the tables as they were before versioning, verbatim."""

_V2 = """
ALTER TABLE requests ADD COLUMN followed_since REAL;
ALTER TABLE requests ADD COLUMN notice TEXT;
-- Requests that ended before notices were tracked were announced back then (or never will be):
-- do not announce them again after the upgrade.
UPDATE requests SET notice = 'delivered'
    WHERE state IN ('succeeded', 'failed', 'cancelled', 'rejected', 'expired');
-- Serves unnotified(): holds only the few executions whose final notice is still due.
CREATE INDEX requests_unnotified ON requests (created_at)
    WHERE notice IS NULL AND state IN ('succeeded', 'failed', 'applied');
-- Serves prune_deliveries().
CREATE INDEX deliveries_at ON deliveries (at);
"""
"""Schema version 2: following and final-notice tracking; pruning of delivery keys."""

_V3 = """
-- One row per Alertmanager alert group (receiver + groupKey): the thread it lives in.
CREATE TABLE alert_groups (
    key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts TEXT,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- Serves groups_without_root(): roots still to post after a restart.
CREATE INDEX alert_groups_rootless ON alert_groups (created_at) WHERE ts IS NULL;
-- Every alert (fingerprint + startsAt) a group has shown, and whether its resolve was shown.
CREATE TABLE alerts_seen (
    group_key TEXT NOT NULL REFERENCES alert_groups (key),
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (group_key, fingerprint, starts_at)
);
-- Silences Deckhand created in Alertmanager, by group.
CREATE TABLE alert_silences (
    id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL REFERENCES alert_groups (key),
    created_by TEXT NOT NULL,
    ends_at REAL NOT NULL,
    expired_by TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX alert_silences_group ON alert_silences (group_key, created_at);
"""
"""Schema version 3: alert groups and their threads, the alerts they showed, their silences."""

_V4 = """
-- One row per node failure: the node and its Ready condition's transition to NotReady/Unknown
-- (so one failure never gets two messages), the message, and what it shows.
CREATE TABLE node_threads (
    node TEXT NOT NULL,
    since TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts TEXT,
    story TEXT NOT NULL,
    closed_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (node, since)
);
-- Serves open_node_threads(): the stories a restart continues.
CREATE INDEX node_threads_open ON node_threads (node) WHERE closed_at IS NULL;
"""
"""Schema version 4: node-failure messages (the failover thread), continued after a restart."""

Migration = tuple[int, str | Callable[[sqlite3.Connection], None]]

_MIGRATIONS: tuple[Migration, ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
)

SCHEMA_VERSION = _MIGRATIONS[-1][0]
"""The newest schema this code knows; a fresh file is created at it."""

_JSON_COLUMNS = ("args", "plan", "result")
# What a transition may write besides the state; the column names are spliced into SQL.
_SETTABLE = frozenset(Request.model_fields) - {"id", "state", "approvers"}


class Store:
    """The SQLite-backed store. Safe to share between threads."""

    def __init__(self, path: Path | str, clock: Any = time.time) -> None:
        """Open (creating if needed) the file at ``path`` and bring its schema up to date.

        Raises:
            StoreError: the file is not a Deckhand database, or a newer Deckhand wrote it.
        """
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            with self._lock:
                # Neither pragma takes effect inside a transaction, so both come first.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate(path)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"cannot open the store {path}: {e}") from e
        except BaseException:
            self._db.close()
            raise

    def _migrate(self, path: Path | str) -> None:
        # BEGIN IMMEDIATE before reading the version: of two processes opening one old file
        # (the bot starting while `deckhand audit` runs), one migrates and the other sees it done.
        with self._tx() as db:
            found = _version(db)
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {path} has schema version {found}, written by a newer Deckhand; "
                    f"this one knows versions up to {SCHEMA_VERSION}. Run the newer version, or "
                    f"restore a backup made before the upgrade.")
            for version, step in _MIGRATIONS:
                if version <= found:
                    continue
                if isinstance(step, str):
                    for statement in _statements(step):
                        db.execute(statement)
                else:
                    step(db)
                db.execute(f"PRAGMA user_version = {int(version)}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- requests ------------------------------------------------------------------------------

    def create(self, request: Request) -> None:
        row = request.model_dump(exclude={"approvers"})
        for col in _JSON_COLUMNS:
            row[col] = json.dumps(row[col]) if row[col] is not None else None
        row["state"] = str(request.state)
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self._tx() as db:
            db.execute(f"INSERT INTO requests ({cols}) VALUES ({marks})", row)

    def get(self, request_id: str) -> Request | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM requests WHERE id = ?",
                                   (request_id,)).fetchone()
            if row is None:
                return None
            approvers = [r["user_id"] for r in self._db.execute(
                "SELECT user_id FROM approvals WHERE request_id = ? ORDER BY at, user_id",
                (request_id,))]
        return _request(row, approvers)

    def transition(self, request_id: str, from_states: Iterable[State], to_state: State, *,
                   unexpired_at: float | None = None, **fields: Any) -> bool:
        """Move a request to ``to_state`` if and only if it is in one of ``from_states``.

        With ``unexpired_at`` (normally "now"), also only if its lifetime had not ended by then:
        the expiry is part of the compare-and-set, not a separate read. Returns whether this
        call made the change. Extra ``fields`` (columns of :class:`Request`, e.g. ``result``)
        are written in the same statement.
        """
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable by a transition: {', '.join(sorted(unknown))}")
        froms = [str(s) for s in from_states]
        sets = {"state": str(to_state), "updated_at": self._clock(), **fields}
        for col in _JSON_COLUMNS:
            if col in sets and sets[col] is not None:
                sets[col] = json.dumps(sets[col])
        assignments = ", ".join(f"{c} = :{c}" for c in sets)
        marks = ", ".join(f":from{i}" for i in range(len(froms)))
        params = {**sets, "id": request_id, **{f"from{i}": s for i, s in enumerate(froms)}}
        where = f"id = :id AND state IN ({marks})"
        if unexpired_at is not None:
            where += " AND expires_at > :unexpired_at"
            params["unexpired_at"] = unexpired_at
        with self._tx() as db:
            cur = db.execute(f"UPDATE requests SET {assignments} WHERE {where}", params)
            return cur.rowcount == 1

    def set_message(self, request_id: str, channel: str, ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE requests SET channel = ?, message_ts = ? WHERE id = ?",
                       (channel, ts, request_id))

    def add_approval(self, request_id: str, user_id: str,
                     while_in: Iterable[State] = OPEN_STATES, *,
                     unexpired_at: float | None = None) -> tuple[bool, int]:
        """Record ``user_id``'s approval while the request is open.

        Returns (whether this call added it, how many approvals the request has now). An
        approval of a request that is no longer open, or (with ``unexpired_at``) whose lifetime
        had ended by then, is not recorded.
        """
        states = [str(s) for s in while_in]
        with self._tx() as db:
            row = db.execute("SELECT state, expires_at FROM requests WHERE id = ?",
                             (request_id,)).fetchone()
            if row is None or row["state"] not in states or (
                    unexpired_at is not None and row["expires_at"] <= unexpired_at):
                return False, self._count(db, request_id)
            cur = db.execute("INSERT OR IGNORE INTO approvals (request_id, user_id, at) "
                             "VALUES (?, ?, ?)", (request_id, user_id, self._clock()))
            return cur.rowcount == 1, self._count(db, request_id)

    @staticmethod
    def _count(db: sqlite3.Connection, request_id: str) -> int:
        return int(db.execute("SELECT COUNT(*) FROM approvals WHERE request_id = ?",
                              (request_id,)).fetchone()[0])

    def in_states(self, states: Iterable[State], expired_by: float | None = None
                  ) -> list[Request]:
        """Requests in ``states``, oldest first; with ``expired_by``, only those whose lifetime
        ended by then (the index on (state, expires_at) serves exactly this query)."""
        marks = [str(s) for s in states]
        query = f"SELECT id FROM requests WHERE state IN ({', '.join('?' * len(marks))})"
        params: list[Any] = list(marks)
        if expired_by is not None:
            query += " AND expires_at <= ?"
            params.append(expired_by)
        return self._requests(query + " ORDER BY created_at", params)

    def _requests(self, query: str, params: list[Any]) -> list[Request]:
        """The requests whose ids ``query`` selects, in its order."""
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    def due_to_expire(self, now: float) -> list[Request]:
        return self.in_states(OPEN_STATES, expired_by=now)

    def recent(self, workload: str, environment: str, limit: int = 10) -> list[Request]:
        return self._requests("SELECT id FROM requests WHERE workload = ? AND environment = ? "
                              "ORDER BY created_at DESC LIMIT ?", [workload, environment, limit])

    # -- final notices -------------------------------------------------------------------------

    def mark_notice(self, request_id: str, notice: str) -> None:
        """Record what became of the request's final Slack notification.

        ``notice`` is :data:`NOTICE_DELIVERED` or ``"refused: <Slack's error>"``.
        """
        if notice != NOTICE_DELIVERED and not notice.startswith("refused: "):
            raise ValueError(f"a notice is {NOTICE_DELIVERED!r} or 'refused: <error>', "
                             f"not {notice!r}")
        with self._tx() as db:
            db.execute("UPDATE requests SET notice = ? WHERE id = ?", (notice, request_id))

    def unnotified(self) -> list[Request]:
        """Requests in :data:`ANNOUNCED_STATES` whose final notification has not gone out yet
        (neither delivered nor refused), oldest first: what a restart or the periodic sweep
        must still announce."""
        # Without statistics the planner would pick requests_state and walk every request that
        # ever succeeded; INDEXED BY makes it use the small partial index instead, and makes
        # this query fail loudly (rather than turn slow) if ANNOUNCED_STATES ever stops
        # matching that index's WHERE: then add a migration that redefines the index.
        states = ", ".join(f"'{s.value}'" for s in ANNOUNCED_STATES)
        return self._requests(
            f"SELECT id FROM requests INDEXED BY requests_unnotified "
            f"WHERE notice IS NULL AND state IN ({states}) ORDER BY created_at", [])

    # -- deliveries: remember what was already handled (Slack retries, Alertmanager resends) --

    def first_delivery(self, key: str) -> bool:
        """True the first time ``key`` is seen, False on every later call."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO deliveries (key, at) VALUES (?, ?)",
                             (key, self._clock()))
            return cur.rowcount == 1

    def prune_deliveries(self, older_than: float) -> int:
        """Forget delivery keys first seen before ``older_than``; return how many.

        A key only has to outlive the redeliveries it guards against (Slack retries within
        minutes), so keeping a day or so is plenty.
        """
        with self._tx() as db:
            return db.execute("DELETE FROM deliveries WHERE at < ?", (older_than,)).rowcount

    # -- alert groups (bot/alerts.py) ----------------------------------------------------------

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

    # -- node-failure threads (bot/node_threads.py) ----------------------------------------

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

    # -- audit ---------------------------------------------------------------------------------

    def audit(self, event: str, *, request: Request | None = None, user_id: str | None = None,
              team_id: str | None = None, action: str | None = None,
              args: dict[str, Any] | None = None, environment: str | None = None,
              workload: str | None = None, result: str | None = None,
              detail: str | None = None) -> None:
        """Append one audit entry; fields default to the request's own."""
        if request is not None:
            action = action or request.verb
            args = args if args is not None else request.args
            environment = environment or request.environment
            workload = workload or request.workload
            team_id = team_id or request.team
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (at, event, request_id, user_id, team_id, action, args, "
                "environment, workload, result, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (self._clock(), event, request.id if request else None, user_id, team_id,
                 action, json.dumps(args) if args is not None else None, environment,
                 workload, result, detail))

    def audit_since(self, since: float, request_id: str | None = None) -> list[AuditEntry]:
        query = "SELECT * FROM audit WHERE at >= ?"
        params: list[Any] = [since]
        if request_id is not None:
            query += " AND request_id = ?"
            params.append(request_id)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        return [AuditEntry(**{**dict(r), "args": json.loads(r["args"]) if r["args"] else None})
                for r in rows]


def _request(row: sqlite3.Row, approvers: list[str]) -> Request:
    data = dict(row)
    for col in _JSON_COLUMNS:
        data[col] = json.loads(data[col]) if data[col] is not None else None
    data["approvers"] = approvers
    return Request.model_validate(data)


def _alert_group(row: sqlite3.Row) -> AlertGroup:
    return AlertGroup(**{**dict(row), "data": json.loads(row["data"])})


def _node_thread(row: sqlite3.Row) -> NodeThread:
    return NodeThread(**{**dict(row), "story": json.loads(row["story"])})


def _version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                   "AND name = 'requests'").fetchone():
        return 1  # written before versioning: the tables exist, the version was never set
    return version


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements. (``executescript`` would commit the transaction the
    migration runs in, so each statement is executed on its own.)"""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip() and not all(ln.strip().startswith("--") or not ln.strip()
                                   for ln in pending.splitlines()):
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:80]!r}")
