"""Requests and their approvals: the rows the gate moves through their states.

Each state change of a request is an atomic compare-and-set (``UPDATE ... WHERE id = ? AND state
IN (...)``), so when several threads (double clicks, two approvers, a redelivered envelope) race
for the same transition exactly one wins and the others see that they lost. A transition that must
not happen after the request's lifetime (a Confirm, an approval, the start of an execution) also
puts the expiry into the same ``WHERE``, so no clock read between a check and the write can let an
expired request through.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from deckhand.bot.store.db import Database


class State(StrEnum):
    """Where a request is in its life. bot/intake/gate.py draws the diagram; in short::

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
"""``Request.notice`` once the final message and thread reply went through. The other value is
``"refused: <Slack's error>"``: Slack refused it for good (``channel_not_found``), and it is not
sent again. While it is empty the notice is due: not sent yet, or Slack could not be reached
(down past the outbox's give-up time, or the bot was stopping); the sweep and the next start
send those again."""



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



_JSON_COLUMNS = ("args", "plan", "result")
# What a transition may write besides the state; the column names are spliced into SQL.
_SETTABLE = frozenset(Request.model_fields) - {"id", "state", "approvers"}


class RequestRows(Database):
    """The ``requests`` and ``approvals`` tables."""

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


def _request(row: sqlite3.Row, approvers: list[str]) -> Request:
    data = dict(row)
    for col in _JSON_COLUMNS:
        data[col] = json.loads(data[col]) if data[col] is not None else None
    data["approvers"] = approvers
    return Request.model_validate(data)


