-- The store's schema as Deckhand wrote it before schema versioning (commit 6dc736f, bot/store.py
-- _SCHEMA, verbatim): schema version 1, although such files carry PRAGMA user_version 0.
-- tests/unit/test_store.py builds a database from it to prove that today's files migrate.
-- Never edit: it is a record of files that exist in the field.
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
