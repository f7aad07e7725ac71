"""The SQLite file behind the store: one shared connection, transactions, schema migrations.

SQLite runs in WAL mode; one connection is shared behind a lock, which is plenty for a chat bot's
write rate and keeps transactions simple.

The file carries its schema version in ``PRAGMA user_version``. Opening a file runs, in one
transaction, every migration in :data:`~deckhand.bot.store.migrations.MIGRATIONS` newer than the
file's version, so a new release starts on the database the previous one left; a file from a newer
release than this code knows is refused rather than misread. Files written before versioning
existed carry ``user_version`` 0 but already have the tables: they are version 1.

Each table family (bot/store/requests.py, deliveries.py, alerts.py, nodes.py, audit.py) is a
class on top of :class:`Database`; :class:`~deckhand.bot.store.Store` is all of them in one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deckhand.bot.errors import StoreError
from deckhand.bot.store.migrations import MIGRATIONS, SCHEMA_VERSION


class Database:
    """The connection, its lock and the clock every table family writes with."""

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
            for version, step in MIGRATIONS:
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
