"""The audit log: who did what, where, with what result; append-only."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from deckhand.bot.store.db import Database
from deckhand.bot.store.requests import Request


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



class AuditLog(Database):
    """The ``audit`` table."""

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


