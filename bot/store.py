"""Durable state: requests and their approvals, and the audit log, in one SQLite file.

Everything that must survive a restart of the bot lives here. Each state change of a request is an
atomic compare-and-set (``UPDATE ... WHERE id = ? AND state IN (...)``), so when several threads
(double clicks, two approvers, a redelivered envelope) race for the same transition exactly one
wins and the others see that they lost. SQLite runs in WAL mode; one connection is shared behind a
lock, which is plenty for a chat bot's write rate and keeps transactions simple.

The store knows nothing about Slack or Kubernetes: rows in, rows out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class State(StrEnum):
    PENDING = "pending"          # waiting for the requester's Confirm
    CONFIRMED = "confirmed"      # confirmed; waiting for approvals
    APPROVED = "approved"        # confirmed and approved; about to execute
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


OPEN_STATES = (State.PENDING, State.CONFIRMED)


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


_SCHEMA = """
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

_JSON_COLUMNS = ("args", "plan", "result")


class Store:
    """The SQLite-backed store. Safe to share between threads."""

    def __init__(self, path: Path | str, clock: Any = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)

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

    def transition(self, request_id: str, from_states: Iterable[State], to_state: State,
                   **fields: Any) -> bool:
        """Move a request to ``to_state`` if and only if it is in one of ``from_states``.

        Returns whether this call made the change. Extra ``fields`` (e.g. ``result``) are
        written in the same statement.
        """
        froms = [str(s) for s in from_states]
        sets = {"state": str(to_state), "updated_at": self._clock(), **fields}
        for col in _JSON_COLUMNS:
            if col in sets and sets[col] is not None:
                sets[col] = json.dumps(sets[col])
        assignments = ", ".join(f"{c} = :{c}" for c in sets)
        marks = ", ".join(f":from{i}" for i in range(len(froms)))
        params = {**sets, "id": request_id, **{f"from{i}": s for i, s in enumerate(froms)}}
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE requests SET {assignments} WHERE id = :id AND state IN ({marks})", params)
            return cur.rowcount == 1

    def set_message(self, request_id: str, channel: str, ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE requests SET channel = ?, message_ts = ? WHERE id = ?",
                       (channel, ts, request_id))

    def add_approval(self, request_id: str, user_id: str,
                     while_in: Iterable[State] = OPEN_STATES) -> tuple[bool, int]:
        """Record ``user_id``'s approval while the request is open.

        Returns (whether this call added it, how many approvals the request has now). An
        approval of a request that is no longer open is not recorded.
        """
        states = [str(s) for s in while_in]
        with self._tx() as db:
            row = db.execute("SELECT state FROM requests WHERE id = ?",
                             (request_id,)).fetchone()
            if row is None or row["state"] not in states:
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
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at", params).fetchall()
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    def due_to_expire(self, now: float) -> list[Request]:
        return self.in_states(OPEN_STATES, expired_by=now)

    def recent(self, workload: str, environment: str, limit: int = 10) -> list[Request]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM requests WHERE workload = ? AND environment = ? "
                "ORDER BY created_at DESC LIMIT ?", (workload, environment, limit)).fetchall()
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    # -- deliveries: remember what was already handled (Slack retries, Alertmanager resends) --

    def first_delivery(self, key: str) -> bool:
        """True the first time ``key`` is seen, False on every later call."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO deliveries (key, at) VALUES (?, ?)",
                             (key, self._clock()))
            return cur.rowcount == 1

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
