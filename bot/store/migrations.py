"""The store's schema: every migration, in order (bot/store/db.py runs them).

Each migration is (the version it produces, SQL or a function of the connection); they run in
order, in one transaction with the version bump. A fresh file is built by running them all, so
a new file and a migrated one cannot drift apart. Never edit a released migration: append one.
Migrations spell states as literals, because the State enum may change after them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

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

MIGRATIONS: tuple[Migration, ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The newest schema this code knows; a fresh file is created at it."""
