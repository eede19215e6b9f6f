"""Storage: the interface the app and the report use, a shared SQL core, and SQLite.

Both backends run the same SQL (``?`` placeholders, ``INSERT ... ON CONFLICT``), so the
rules below are written once in :class:`SQLStore`:

* A report id is stored once per app, forever: ``INSERT ... ON CONFLICT DO NOTHING`` on the
  primary key ``(app, id)`` decides "stored" or "duplicate", under concurrency too.
* One request is one transaction: all its reports and counts land, or none.
* Rows are written in a fixed order (report ids sorted, then refusal keys sorted) so two
  concurrent PostgreSQL transactions cannot wait on each other in a cycle.
* Forgetting a machine deletes its counts and strips machine, day and environment from its
  report rows, keeping only ``(app, id)`` so a late resend is still a duplicate.
* Nothing about the HTTP request (address, headers, user agent) is ever passed in here.

The schema is versioned in the ``meta`` table and migrated by :meth:`SQLStore.migrate`
when a store is opened. Only the report and the app import this module; it imports no
third-party package (SQLite is in the standard library; PostgreSQL is ``store_pg``).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

SCHEMA_VERSION = 1
#: A forgotten machine id is refused for this long, then forgotten itself.
FORGET_SECONDS = 30 * 86400
#: Refusals for apps outside the allowlist are stored under this app, never the client's name.
OTHER_APP = ""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE reports (
            app TEXT NOT NULL, id TEXT NOT NULL, machine_id TEXT, day TEXT,
            app_version TEXT, lib_version TEXT, os TEXT, arch TEXT, python TEXT, ci INTEGER,
            PRIMARY KEY (app, id))""",
        "CREATE INDEX reports_machine ON reports (app, machine_id)",
        "CREATE INDEX reports_day ON reports (day, app)",
        """CREATE TABLE counts (
            app TEXT NOT NULL, report_id TEXT NOT NULL, name TEXT NOT NULL,
            value BIGINT NOT NULL, PRIMARY KEY (app, report_id, name))""",
        """CREATE TABLE refusals (
            app TEXT NOT NULL, day TEXT NOT NULL, reason TEXT NOT NULL, n BIGINT NOT NULL,
            PRIMARY KEY (app, day, reason))""",
        """CREATE TABLE forgotten (
            app TEXT NOT NULL, machine_id TEXT NOT NULL, since BIGINT NOT NULL,
            PRIMARY KEY (app, machine_id))""",
        """CREATE TABLE deletions (
            app TEXT NOT NULL, day TEXT NOT NULL, n BIGINT NOT NULL,
            PRIMARY KEY (app, day))""",
    ),
}


class StoreError(Exception):
    """The database cannot be opened, migrated or used."""


class MachineForgotten(StoreError):
    """A report from a machine id that asked to be forgotten less than 30 days ago."""


@dataclass(frozen=True)
class Environment:
    """What a rollup says about the machine, stored with each of its reports."""

    app_version: str | None
    lib_version: str
    os: str
    arch: str
    python: str
    ci: bool


@dataclass(frozen=True)
class ReportRows:
    """One report as the store sees it: counts already filtered by the allowlist."""

    id: str
    day: str
    counts: dict[str, int]
    refused: dict[str, int] = field(default_factory=dict)  # reason -> counters refused


@dataclass(frozen=True)
class Ingest:
    """One request's reports. ``machine_id=None`` stores ids and refusals only."""

    app: str
    machine_id: str | None
    env: Environment | None
    reports: Sequence[ReportRows]


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...


C = TypeVar("C")


class Pool(Generic[C]):
    """At most ``size`` connections, each used by one thread at a time."""

    def __init__(self, factory: Callable[[], C], size: int) -> None:
        self._factory = factory
        self._idle: queue.LifoQueue[C] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[C] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[C]:
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._factory()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            except BaseException:
                self._discard(conn)
                raise
            self._idle.put(conn)
        finally:
            self._slots.release()

    def _discard(self, conn: C) -> None:
        # A connection that saw an error may be mid-transaction or broken: never reuse it.
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        _close(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            _close(conn)


def _close(conn: object) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        # Closing a broken connection may fail; there is nothing more to do with it.
        with contextlib.suppress(Exception):
            close()


DailyRow = tuple[str, str, str, int, int]  # app, day, name, total, machines
MachinesRow = tuple[str, str, int]  # app, value (version/os/python), machines
RefusalRow = tuple[str, str, str, int]  # app, day, reason, n
DeletionRow = tuple[str, str, int]  # app, day, n

_MACHINES_BY = {
    dimension: (
        f"SELECT app, COALESCE({dimension}, '(none)'), COUNT(DISTINCT machine_id) FROM reports"  # noqa: S608 - dimension comes from this fixed tuple
        " WHERE day >= ? AND (CAST(? AS TEXT) IS NULL OR app = ?) AND machine_id IS NOT NULL"
        f" GROUP BY app, {dimension} ORDER BY app, 3 DESC, 2"
    )
    for dimension in ("app_version", "os", "python")
}


class SQLStore:
    """The storage rules, over any DB-API connection with ``?`` placeholders."""

    backend = "sql"

    @contextmanager
    def transaction(self) -> Iterator[Executor]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- schema -------------------------------------------------------------------------
    def _lock_for_migration(self, tx: Executor) -> None:
        """Serialise concurrent migrations (several server processes starting at once)."""

    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
        with self.transaction() as tx:
            self._lock_for_migration(tx)
            tx.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            rows = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            found = int(rows[0][0]) if rows else 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {found} is newer than this server's "
                    f"({SCHEMA_VERSION}); upgrade telemetry-rollup"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    tx.execute(statement)
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        return found

    def schema_version(self) -> int:
        with self.transaction() as tx:
            rows = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else 0

    def ping(self) -> None:
        with self.transaction() as tx:
            tx.execute("SELECT 1").fetchall()

    # -- writes -------------------------------------------------------------------------
    def ingest(self, batch: Ingest, now: float) -> IngestResult:
        """Store a request's new reports in one transaction; see the module docstring."""
        stored = duplicates = 0
        refused: dict[tuple[str, str], int] = {}
        env = batch.env
        with self.transaction() as tx:
            if batch.machine_id is not None and self._is_forgotten(tx, batch.app, batch.machine_id, now):
                raise MachineForgotten(batch.app)
            new: list[ReportRows] = []
            for report in sorted(batch.reports, key=lambda r: r.id):
                cur = tx.execute(
                    "INSERT INTO reports (app, id, machine_id, day, app_version, lib_version,"
                    " os, arch, python, ci) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (app, id) DO NOTHING",
                    (
                        batch.app,
                        report.id,
                        batch.machine_id,
                        report.day,
                        env.app_version if env else None,
                        env.lib_version if env else None,
                        env.os if env else None,
                        env.arch if env else None,
                        env.python if env else None,
                        (1 if env.ci else 0) if env else None,
                    ),
                )
                if cur.rowcount == 1:
                    stored += 1
                    new.append(report)
                else:
                    duplicates += 1
            rows = [
                (batch.app, report.id, name, value) for report in new for name, value in sorted(report.counts.items())
            ]
            if rows:
                tx.executemany("INSERT INTO counts (app, report_id, name, value) VALUES (?, ?, ?, ?)", rows)
            for report in new:
                for reason, n in report.refused.items():
                    if n:
                        key = (report.day, reason)
                        refused[key] = refused.get(key, 0) + n
            for (day, reason), n in sorted(refused.items()):
                tx.execute(
                    "INSERT INTO refusals (app, day, reason, n) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (app, day, reason) DO UPDATE SET n = refusals.n + excluded.n",
                    (batch.app, day, reason, n),
                )
        return IngestResult(stored=stored, duplicates=duplicates)

    def forget(self, app: str, machine_id: str, now: float, today: str) -> bool:
        """Delete everything stored for the machine; True when this was a new request."""
        cutoff = int(now) - FORGET_SECONDS
        with self.transaction() as tx:
            tx.execute("DELETE FROM forgotten WHERE since < ?", (cutoff,))
            tx.execute(
                "DELETE FROM counts WHERE app = ? AND report_id IN"
                " (SELECT id FROM reports WHERE app = ? AND machine_id = ?)",
                (app, app, machine_id),
            )
            # Keep (app, id) so a late resend of these reports is still a duplicate.
            tx.execute(
                "UPDATE reports SET machine_id = NULL, day = NULL, app_version = NULL,"
                " lib_version = NULL, os = NULL, arch = NULL, python = NULL, ci = NULL"
                " WHERE app = ? AND machine_id = ?",
                (app, machine_id),
            )
            cur = tx.execute(
                "INSERT INTO forgotten (app, machine_id, since) VALUES (?, ?, ?)"
                " ON CONFLICT (app, machine_id) DO NOTHING",
                (app, machine_id, int(now)),
            )
            honoured = cur.rowcount == 1
            if honoured:
                tx.execute(
                    "INSERT INTO deletions (app, day, n) VALUES (?, ?, 1)"
                    " ON CONFLICT (app, day) DO UPDATE SET n = deletions.n + 1",
                    (app, today),
                )
        return honoured

    def is_forgotten(self, app: str, machine_id: str, now: float) -> bool:
        with self.transaction() as tx:
            return self._is_forgotten(tx, app, machine_id, now)

    @staticmethod
    def _is_forgotten(tx: Executor, app: str, machine_id: str, now: float) -> bool:
        rows = tx.execute(
            "SELECT 1 FROM forgotten WHERE app = ? AND machine_id = ? AND since >= ?",
            (app, machine_id, int(now) - FORGET_SECONDS),
        ).fetchall()
        return bool(rows)

    # -- reads (plain tuples; report.py shapes them) --------------------------------------
    def daily_counts(self, app: str | None, since: str) -> list[DailyRow]:
        with self.transaction() as tx:
            rows = tx.execute(
                "SELECT r.app, r.day, c.name, SUM(c.value), COUNT(DISTINCT r.machine_id)"
                " FROM counts c JOIN reports r ON r.app = c.app AND r.id = c.report_id"
                " WHERE r.day >= ? AND (CAST(? AS TEXT) IS NULL OR r.app = ?)"
                " GROUP BY r.app, r.day, c.name ORDER BY r.app, r.day, c.name",
                (since, app, app),
            ).fetchall()
        return [(a, d, n, int(t), int(m)) for a, d, n, t, m in rows]

    def machines_per_day(self, app: str | None, since: str) -> list[tuple[str, str, int]]:
        """(app, day, distinct machine ids that sent a report for that day)."""
        with self.transaction() as tx:
            rows = tx.execute(
                "SELECT app, day, COUNT(DISTINCT machine_id) FROM reports WHERE day >= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) GROUP BY app, day ORDER BY app, day",
                (since, app, app),
            ).fetchall()
        return [(a, d, int(m)) for a, d, m in rows]

    def machines_by(self, dimension: str, app: str | None, since: str) -> list[MachinesRow]:
        sql = _MACHINES_BY[dimension]
        with self.transaction() as tx:
            rows = tx.execute(sql, (since, app, app)).fetchall()
        return [(a, str(v), int(m)) for a, v, m in rows]

    def refusals(self, app: str | None, since: str) -> list[RefusalRow]:
        with self.transaction() as tx:
            rows = tx.execute(
                "SELECT app, day, reason, n FROM refusals WHERE day >= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) ORDER BY app, day, reason",
                (since, app, app),
            ).fetchall()
        return [(a, d, r, int(n)) for a, d, r, n in rows]

    def deletions(self, app: str | None, since: str) -> list[DeletionRow]:
        with self.transaction() as tx:
            rows = tx.execute(
                "SELECT app, day, n FROM deletions WHERE day >= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) ORDER BY app, day",
                (since, app, app),
            ).fetchall()
        return [(a, d, int(n)) for a, d, n in rows]

    def report_ids(self, app: str) -> list[tuple[str, str | None, str | None]]:
        """(id, machine_id, day) of every known report of an app; for tests and audits."""
        with self.transaction() as tx:
            rows = tx.execute("SELECT id, machine_id, day FROM reports WHERE app = ? ORDER BY id", (app,)).fetchall()
        return [(str(i), m, d) for i, m, d in rows]


class _SQLiteExecutor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, [tuple(p) for p in params])


class SQLiteStore(SQLStore):
    """SQLite in WAL mode: readers never block the writer; writers queue on BEGIN IMMEDIATE."""

    backend = "sqlite"

    def __init__(self, path: Path, pool_size: int = 8) -> None:
        self.path = path
        self._pool: Pool[sqlite3.Connection] = Pool(self._connect, pool_size)
        # One transaction at a time within this process: threads queue on a lock instead of
        # in SQLite's busy handler, whose sleeps (up to 100 ms) made p99 latency ~110 ms.
        # Other processes (--workers) still meet at BEGIN IMMEDIATE and the busy timeout.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a 2xx tells the client to delete its report, so the commit must be on disk.
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._write_lock, self._pool.connection() as conn:
            try:
                # IMMEDIATE takes the write lock up front, so a reader-turned-writer never
                # fails with SQLITE_BUSY halfway through (busy_timeout covers the wait).
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}") from None
            try:
                yield _SQLiteExecutor(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        self._pool.close()


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a SQLite URL (sqlite:///file.db or sqlite:////abs/file.db): {url}")
    return Path(url[len(prefix) :])


def default_db_url() -> str:
    """A SQLite file under the user's data directory (created by :func:`open_store`)."""
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("telemetry-rollup")) / "server.db")


def check_db_url(url: str) -> None:
    """Raise ValueError for a URL that names no supported backend."""
    if url.startswith(("postgresql://", "postgres://")):
        return
    sqlite_path_from_url(url)


def open_store(url: str, *, create: bool = True) -> SQLStore:
    """Open and migrate the store a URL names. ``create=False`` refuses a missing SQLite file."""
    check_db_url(url)
    store: SQLStore
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg is an optional extra, loaded only for a postgresql:// URL.
        from telemetry_rollup.server.store_pg import PostgresStore

        store = PostgresStore(url)
    else:
        path = sqlite_path_from_url(url)
        if not path.exists():
            if not create:
                raise StoreError(f"no database at {path}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from None
        store = SQLiteStore(path)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
