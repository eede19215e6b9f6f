"""SQLite connections for the store: WAL mode, one writer at a time, readers on snapshots.

Readers never block the writer and never wait for it (WAL gives each read transaction a
snapshot). Writers of this process queue on a lock; other processes (``--workers``) meet at
``BEGIN IMMEDIATE`` and the busy timeout. ``readonly`` (``report``) opens the file with
``mode=ro``, so nothing can be written, the schema included.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote

from telemetry_rollup.server.db import Cursor, Dialect, Executor, Pool, StoreError

DIALECT = Dialect(
    name="sqlite",
    serial="INTEGER PRIMARY KEY",
    for_update="",
    without_rowid=" WITHOUT ROWID",
    meta_exists="SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
)


class _Executor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, [tuple(p) for p in params])

    def pipelined(self) -> AbstractContextManager[None]:
        return nullcontext()  # in-process: no round trip to save


class SQLiteDatabase:
    """One SQLite file in WAL mode with ``synchronous=FULL``."""

    dialect = DIALECT

    def __init__(self, path: Path, pool_size: int = 8, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        # One writer connection is enough: writers take turns on _write_lock anyway.
        self._writers: Pool[sqlite3.Connection] = Pool(self._connect_writer, 1)
        self._readers: Pool[sqlite3.Connection] = Pool(self._connect_reader, pool_size)
        # One transaction at a time within this process: threads queue on a lock instead of
        # in SQLite's busy handler, whose sleeps (up to 100 ms) made p99 latency ~110 ms.
        # Other processes (--workers) still meet at BEGIN IMMEDIATE and the busy timeout.
        # Readers never take it: WAL gives each read transaction its own snapshot.
        self._write_lock = threading.Lock()

    def _connect_writer(self) -> sqlite3.Connection:
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a 2xx tells the client to delete its report, so the commit must be on disk.
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """mode=ro: nothing can be written, the schema included (report reads what is there).

        A WAL database read-only needs its -shm file: a running server keeps it, and so does
        any directory report may write in. On read-only media with no server writing (no -wal
        file), the file cannot change, so it is opened as immutable (no locking needed)."""
        base = "file:" + quote(str(self.path.resolve())) + "?mode=ro"
        conn = sqlite3.connect(base, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if Path(str(self.path) + "-wal").exists():
                raise
        return sqlite3.connect(base + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        # IMMEDIATE takes the write lock up front, so a reader-turned-writer never fails with
        # SQLITE_BUSY halfway through (busy_timeout covers the wait).
        with self._write_lock, self._writers.connection() as conn, _in_transaction(conn, "BEGIN IMMEDIATE") as ex:
            yield ex

    @contextmanager
    def reading(self) -> Iterator[Executor]:
        # deferred: one snapshot from the first SELECT to COMMIT
        with self._readers.connection() as conn, _in_transaction(conn, "BEGIN") as ex:
            yield ex

    def close(self) -> None:
        self._writers.close()
        self._readers.close()


@contextmanager
def _in_transaction(conn: sqlite3.Connection, begin: str) -> Iterator[Executor]:
    """``begin`` ... COMMIT, or ROLLBACK on any exception; SQLite's errors as StoreError."""
    try:
        conn.execute(begin)
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite: {exc}") from None
    try:
        yield _Executor(conn)
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise StoreError(f"SQLite: {exc}") from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
