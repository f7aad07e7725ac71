"""Durable state, in one SQLite file.

Everything that must survive a restart of the bot lives here: requests and their approvals
(requests.py), delivery keys (deliveries.py), alert threads and silences (alerts.py), node-failure
threads (nodes.py) and the audit log (audit.py), one module per table family, all on one SQLite
file (db.py, migrations.py).

The store knows nothing about Slack or Kubernetes: rows in, rows out.
"""

from __future__ import annotations

from deckhand.bot.store.alerts import AlertGroup, AlertRows, AlertSilence
from deckhand.bot.store.audit import AuditEntry, AuditLog
from deckhand.bot.store.deliveries import DeliveryRows
from deckhand.bot.store.migrations import SCHEMA_VERSION
from deckhand.bot.store.nodes import NodeThread, NodeThreadRows
from deckhand.bot.store.requests import (
    ANNOUNCED_STATES,
    FINAL_STATES,
    NOTICE_DELIVERED,
    OPEN_STATES,
    Request,
    RequestRows,
    State,
)


class Store(RequestRows, DeliveryRows, AlertRows, NodeThreadRows, AuditLog):
    """The SQLite-backed store: every table family on one connection. Safe to share between
    threads."""


__all__ = ["ANNOUNCED_STATES", "FINAL_STATES", "NOTICE_DELIVERED", "OPEN_STATES", "SCHEMA_VERSION",
           "AlertGroup", "AlertSilence", "AuditEntry", "NodeThread", "Request", "State", "Store"]
