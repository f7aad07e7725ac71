"""The store's schema versioning and its newer operations, on real SQLite files.

The migration tests start from a file built with the exact DDL Deckhand used before the store had
a schema version (tests/unit/data/store_v1.sql) and rows such a version wrote.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deckhand.bot.errors import StoreError
from deckhand.bot.store import FINAL_STATES, NOTICE_DELIVERED, OPEN_STATES, Request, State, Store
from deckhand.bot.store import db as store_module
from deckhand.bot.store.migrations import SCHEMA_VERSION

DATA = Path(__file__).parent / "data"
V1_TERMINAL = {"succeeded001", "failed000001", "cancelled001", "rejected0001", "expired00001"}
V1_OTHERS = {"pending00001", "confirmed001", "approved0001", "executing001"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_100.0

    def __call__(self) -> float:
        return self.now


def v1_file(path: Path) -> Path:
    """A database exactly as the unversioned store left it (user_version 0)."""
    db = sqlite3.connect(path)
    db.executescript((DATA / "store_v1.sql").read_text())
    db.executescript((DATA / "store_v1_rows.sql").read_text())
    db.commit()
    db.close()
    return path


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def schema(path: Path) -> set[tuple[str, str, str | None]]:
    db = sqlite3.connect(path)
    try:
        return {(r[0], r[1], r[2]) for r in db.execute("SELECT type, name, sql FROM sqlite_master")}
    finally:
        db.close()


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [*db.iterdump(), f"user_version {db.execute('PRAGMA user_version').fetchone()[0]}"]
    finally:
        db.close()


def make(request_id: str, state: State, created_at: float, lifetime: float = 600) -> Request:
    return Request(id=request_id, verb="deploy", args={"image": "x:1"}, workload="cardano-node",
                   environment="staging", namespace="cardano-staging", requester="UREQ",
                   team="T1", channel="C1", state=state, created_at=created_at,
                   expires_at=created_at + lifetime, updated_at=created_at)


# -- versioning and migrations -----------------------------------------------------------------


def test_a_file_written_before_versioning_migrates_on_open(tmp_path: Path) -> None:
    path = v1_file(tmp_path / "deckhand.db")
    assert user_version(path) == 0

    store = Store(path, clock=Clock())
    assert store.schema_version == SCHEMA_VERSION == 4
    assert user_version(path) == SCHEMA_VERSION

    rows = {r.id: r for r in store.in_states(list(State))}
    assert set(rows) == V1_TERMINAL | V1_OTHERS
    failed = rows["failed000001"]
    assert failed.state is State.FAILED and failed.approvers == ["UAPP2"]
    assert failed.args == {"workload": "cardano-node", "environment": "production",
                           "image": "x:9"}
    assert failed.plan == {"summary": ["image x:1 -> x:9"]}
    assert failed.result == {"ok": False, "message": "rollout did not finish within 600 s",
                             "rollback_offer": True}
    assert (failed.created_at, failed.expires_at, failed.updated_at) == (
        1699980000.0, 1699981800.0, 1699980700.0)
    assert rows["confirmed001"].approvers == ["UAPP1"]
    assert rows["approved0001"].thread_ts == "1699999999.000100"
    assert {r.state for r in rows.values()} == {
        State.PENDING, State.CONFIRMED, State.APPROVED, State.EXECUTING, State.SUCCEEDED,
        State.FAILED, State.CANCELLED, State.REJECTED, State.EXPIRED}

    # Ended requests count as announced; nothing else does, and nothing was following.
    assert {i for i, r in rows.items() if r.notice == NOTICE_DELIVERED} == V1_TERMINAL
    assert all(rows[i].notice is None for i in V1_OTHERS)
    assert all(r.followed_since is None for r in rows.values())
    assert store.unnotified() == []

    audit = store.audit_since(0)
    assert [(e.seq, e.event, e.request_id) for e in audit] == [
        (1, "requested", "failed000001"), (2, "confirmed", "failed000001"),
        (3, "approved", "failed000001"), (4, "failed", "failed000001"), (5, "denied", None)]
    assert audit[0].args == {"workload": "cardano-node", "environment": "production",
                             "image": "x:9"}
    assert audit[4].team_id == "T2" and audit[4].detail == "request from another workspace"
    # A new entry continues the old sequence.
    store.audit("requested", user_id="UREQ")
    assert store.audit_since(0)[-1].seq == 6

    # Delivery keys survived: a redelivery of an old command is still recognised.
    assert not store.first_delivery("command:111.222.aaa")

    # The new columns work on old rows.
    assert store.transition("executing001", [State.EXECUTING], State.FOLLOWING,
                            followed_since=1700000100.0)
    assert store.transition("executing001", [State.FOLLOWING], State.SUCCEEDED,
                            result={"ok": True, "message": "rolled out"})
    assert [r.id for r in store.unnotified()] == ["executing001"]
    store.mark_notice("executing001", "refused: channel_not_found")
    following = store.get("executing001")
    assert following is not None
    assert following.followed_since == 1700000100.0
    assert following.notice == "refused: channel_not_found"
    assert store.unnotified() == []
    store.close()


def test_a_migrated_file_has_the_same_schema_as_a_fresh_one(tmp_path: Path) -> None:
    Store(v1_file(tmp_path / "old.db")).close()
    Store(tmp_path / "new.db").close()
    assert user_version(tmp_path / "new.db") == SCHEMA_VERSION
    assert schema(tmp_path / "old.db") == schema(tmp_path / "new.db")


def test_opening_a_current_file_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "deckhand.db"
    store = Store(path, clock=Clock())
    store.create(make("r1", State.PENDING, 1_700_000_000.0))
    store.audit("requested", user_id="UREQ")
    store.close()
    before = dump(path)
    Store(path).close()
    Store(path).close()
    assert dump(path) == before


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deckhand.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = dump(path)

    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, written by a "
                                         rf"newer Deckhand; this one knows versions up to "
                                         rf"{SCHEMA_VERSION}"):
        Store(path)
    assert dump(path) == before


def test_a_file_that_is_no_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deckhand.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="cannot open the store") as caught:
        Store(path)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = v1_file(tmp_path / "deckhand.db")
    before = dump(path)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE alerts (id TEXT PRIMARY KEY)")
        raise RuntimeError("migration 3 failed half way")

    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, (3, broken)))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 3)
    with pytest.raises(RuntimeError, match="half way"):
        Store(path)
    # Versions 2 and 3 ran in the same transaction as the failure: none of it stayed.
    assert dump(path) == before


# -- expiry inside the compare-and-set ---------------------------------------------------------


def test_transition_with_unexpired_at_refuses_an_expired_request(tmp_path: Path) -> None:
    store = Store(tmp_path / "deckhand.db", clock=Clock())
    store.create(make("r1", State.PENDING, 1000.0, lifetime=60))  # expires at 1060
    assert not store.transition("r1", [State.PENDING], State.CONFIRMED, unexpired_at=1060.0)
    assert not store.transition("r1", [State.PENDING], State.CONFIRMED, unexpired_at=2000.0)
    assert store.get("r1").state is State.PENDING  # type: ignore[union-attr]
    assert store.transition("r1", [State.PENDING], State.CONFIRMED, unexpired_at=1059.9)
    assert store.get("r1").state is State.CONFIRMED  # type: ignore[union-attr]
    # Without unexpired_at the lifetime plays no part (the expiry sweep needs exactly that).
    assert store.transition("r1", OPEN_STATES, State.EXPIRED)


def test_an_approval_after_the_lifetime_is_not_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "deckhand.db", clock=Clock())
    store.create(make("r1", State.CONFIRMED, 1000.0, lifetime=60))
    assert store.add_approval("r1", "UAPP1", unexpired_at=1060.0) == (False, 0)
    assert store.get("r1").approvers == []  # type: ignore[union-attr]
    assert store.add_approval("r1", "UAPP1", unexpired_at=1059.0) == (True, 1)
    assert store.add_approval("r1", "UAPP2") == (True, 2)


def test_transition_writes_only_known_columns(tmp_path: Path) -> None:
    store = Store(tmp_path / "deckhand.db", clock=Clock())
    store.create(make("r1", State.PENDING, 1000.0))
    with pytest.raises(ValueError, match="not settable by a transition: bogus"):
        store.transition("r1", [State.PENDING], State.CANCELLED, bogus=1)
    assert store.get("r1").state is State.PENDING  # type: ignore[union-attr]


# -- final notices -----------------------------------------------------------------------------


def test_unnotified_lists_finished_executions_until_their_notice_is_recorded(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "deckhand.db", clock=Clock())
    for i, state in enumerate(State):
        store.create(make(f"r-{state}", state, 1000.0 - i))  # later states are older
    due = store.unnotified()
    assert [r.state for r in due] == [State.APPLIED, State.FAILED, State.SUCCEEDED]
    assert all(r.notice is None for r in due)
    assert set(FINAL_STATES) >= {r.state for r in due}

    store.mark_notice("r-failed", NOTICE_DELIVERED)
    store.mark_notice("r-applied", "refused: ratelimited")
    assert [r.id for r in store.unnotified()] == ["r-succeeded"]
    assert store.get("r-applied").notice == "refused: ratelimited"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="a notice is 'delivered' or 'refused: <error>'"):
        store.mark_notice("r-succeeded", "sent")
    assert [r.id for r in store.unnotified()] == ["r-succeeded"]


def test_final_states_are_the_states_no_transition_leaves() -> None:
    assert set(FINAL_STATES) == set(State) - {State.PENDING, State.CONFIRMED, State.APPROVED,
                                              State.EXECUTING, State.FOLLOWING}
    assert not set(FINAL_STATES) & set(OPEN_STATES)


# -- deliveries --------------------------------------------------------------------------------


def test_prune_deliveries_forgets_only_old_keys(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "deckhand.db", clock=clock)
    clock.now = 1000.0
    assert store.first_delivery("old-1") and store.first_delivery("old-2")
    clock.now = 2000.0
    assert store.first_delivery("new")

    assert store.prune_deliveries(older_than=2000.0) == 2
    assert store.prune_deliveries(older_than=2000.0) == 0
    assert not store.first_delivery("new")  # still remembered
    assert store.first_delivery("old-1")  # forgotten, so it counts as new again


# -- node-failure threads (schema version 4) ---------------------------------------------------


def test_a_version_3_file_migrates_to_node_threads(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = v1_file(tmp_path / "deckhand.db")
    with monkeypatch.context() as m:  # the release before node threads
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:3])
        m.setattr(store_module, "SCHEMA_VERSION", 3)
        old = Store(path, clock=Clock())
        old.save_alert_group("g1", "C1", "firing", {"x": 1}, [("fp", "t", "firing")])
        old.close()
    assert user_version(path) == 3

    store = Store(path, clock=Clock())
    assert store.schema_version == SCHEMA_VERSION == 4
    assert (store.alert_group("g1") or pytest.fail()).data == {"x": 1}
    assert {r.id for r in store.in_states(list(State))} == V1_TERMINAL | V1_OTHERS
    assert store.open_node_threads() == []
    assert store.open_node_thread("w1", "2026-01-01T10:00:00Z", "C1", {"node": "w1"})
    assert [t.node for t in store.open_node_threads()] == ["w1"]
    store.close()
    Store(tmp_path / "fresh.db").close()
    assert schema(path) == schema(tmp_path / "fresh.db")


def test_node_threads_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "deckhand.db", clock=clock)
    t1, t2 = "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"
    assert store.open_node_thread("w1", t1, "C1", {"step": 1})
    assert not store.open_node_thread("w1", t1, "C2", {"step": 0})  # the same failure
    assert store.node_thread("w1", t1) == store.open_node_threads()[0]
    first = store.node_thread("w1", t1) or pytest.fail()
    assert (first.channel, first.ts, first.story, first.closed_at) == ("C1", None, {"step": 1},
                                                                       None)
    store.set_node_thread_ts("w1", t1, "100.1")
    clock.now += 10
    store.save_node_story("w1", t1, {"step": 2})
    again = store.node_thread("w1", t1) or pytest.fail()
    assert (again.ts, again.story, again.closed_at, again.updated_at) == (
        "100.1", {"step": 2}, None, clock.now)

    clock.now += 10
    store.save_node_story("w1", t1, {"step": 3}, closed=True)
    closed_at = clock.now
    clock.now += 10
    store.save_node_story("w1", t1, {"step": 4}, closed=True)  # the first end stays the end
    assert (store.node_thread("w1", t1) or pytest.fail()).closed_at == closed_at
    assert store.open_node_threads() == []
    assert not store.open_node_thread("w1", t1, "C1", {})  # ended: still not told twice

    clock.now += 10
    assert store.open_node_thread("w1", t2, "C1", {"step": 1})  # the node's next failure
    assert [t.since for t in store.open_node_threads()] == [t2]
    assert (store.latest_node_thread("w1") or pytest.fail()).since == t2
    assert store.latest_node_thread("w9") is None

    assert store.prune_node_threads(older_than=closed_at) == 0
    assert store.prune_node_threads(older_than=closed_at + 1) == 1
    assert store.node_thread("w1", t1) is None and store.node_thread("w1", t2) is not None
