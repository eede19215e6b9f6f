"""Storage: the interface the app and the report use, a shared SQL core, and SQLite.

Both backends run the same SQL (``?`` placeholders, ``INSERT ... ON CONFLICT``), so the
rules below are written once in :class:`SQLStore`:

* A report is stored once per (app, machine, report id), forever: ``INSERT ... ON CONFLICT
  DO NOTHING`` on that unique key decides "stored" or "duplicate", under concurrency too. A
  report id alone decides nothing: another machine sending the same id (one that read it in
  ``show``) stores its own report and cannot make the real one a duplicate.
* One request is one transaction: all its reports and counts land, or none.
* Rows are written in a fixed order (report ids sorted, then name days, then refusal keys
  sorted) so two concurrent PostgreSQL transactions cannot wait on each other in a cycle.
* Reports stored without their machine (apps not allowed, app versions too old, machines
  forgotten) keep only a one-way tag of (machine, report id) in ``seen``: a resend is still a
  duplicate, and the tag names no machine (:func:`seen_tag`).
* At most ``names_per_app_day`` distinct counter names are stored per app and UTC day (the
  ``names`` ledger); the counts of later names are folded into :data:`FOLDED_NAME` and the
  number of names folded is counted under the refusal reason ``names_over_cap``.
* Forgetting a machine deletes its reports and counts (keeping their ``seen`` tags); a
  request that proved it came from the machine also refuses its reports for 30 days.
* Reads run on their own connections and never wait for the write lock (SQLite in WAL mode
  gives each read a snapshot while one writer commits).
* Nothing about the HTTP request (address, headers, user agent) is ever passed in here.

The schema is versioned in the ``meta`` table and migrated by :meth:`SQLStore.migrate`
when the server opens a store; ``report`` opens it read-only and migrates nothing. Only the
report and the app import this module; it imports no third-party package (SQLite is in the
standard library; PostgreSQL is ``store_pg``).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

SCHEMA_VERSION = 3
#: A forgotten machine id is refused for this long, then forgotten itself.
FORGET_SECONDS = 30 * 86400
#: Refusals for apps outside the allowlist are stored under this app, never the client's name.
OTHER_APP = ""
#: Counts of names beyond the per-app per-day cap are stored under this name. It cannot be a
#: counter name on the wire (parentheses and a space), so no client can send it.
FOLDED_NAME = "(other names)"
#: The default cap on distinct counter names stored per app and UTC day (config ``limits``).
NAMES_PER_APP_DAY = 1000

#: ``{serial}`` is the backend's auto-numbered primary key column type.
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
    # 2: deduplication per (app, machine, report id). Reports get a numbered key that counts
    # point to; rows version 1 kept without a machine move to "seen" under their old id (they
    # can match no new tag, and nothing else reads them); version-1 deletion requests keep
    # refusing their machine for their 30 days (proven = 1: they were honoured that way).
    2: (
        """CREATE TABLE reports_v2 (
            rid {serial}, app TEXT NOT NULL, machine_id TEXT NOT NULL, id TEXT NOT NULL,
            day TEXT NOT NULL, app_version TEXT, lib_version TEXT NOT NULL, os TEXT NOT NULL,
            arch TEXT NOT NULL, python TEXT NOT NULL, ci INTEGER NOT NULL,
            UNIQUE (app, machine_id, id))""",
        """INSERT INTO reports_v2 (app, machine_id, id, day, app_version, lib_version, os, arch, python, ci)
            SELECT app, machine_id, id, day, app_version, lib_version, os, arch, python, ci
            FROM reports WHERE machine_id IS NOT NULL ORDER BY app, id""",
        """CREATE TABLE seen (
            app TEXT NOT NULL, tag TEXT NOT NULL, day TEXT, PRIMARY KEY (app, tag))""",
        "INSERT INTO seen (app, tag, day) SELECT app, 'v1:' || id, day FROM reports WHERE machine_id IS NULL",
        """CREATE TABLE counts_v2 (
            rid BIGINT NOT NULL, name TEXT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (rid, name))""",
        """INSERT INTO counts_v2 (rid, name, value)
            SELECT r.rid, c.name, c.value FROM counts c JOIN reports_v2 r ON r.app = c.app AND r.id = c.report_id""",
        "DROP TABLE counts",
        "DROP TABLE reports",
        "ALTER TABLE reports_v2 RENAME TO reports",
        "ALTER TABLE counts_v2 RENAME TO counts",
        "CREATE INDEX reports_day ON reports (day, app)",
        "ALTER TABLE forgotten ADD COLUMN proven INTEGER NOT NULL DEFAULT 1",
    ),
    # 3: the per-app per-day ledger of distinct names, filled from what is stored.
    3: (
        """CREATE TABLE names (
            app TEXT NOT NULL, day TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (app, day, name))""",
        """CREATE TABLE name_days (
            app TEXT NOT NULL, day TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (app, day))""",
        """INSERT INTO names (app, day, name)
            SELECT DISTINCT r.app, r.day, c.name FROM counts c JOIN reports r ON r.rid = c.rid""",
        "INSERT INTO name_days (app, day, n) SELECT app, day, COUNT(*) FROM names GROUP BY app, day",
    ),
}


def seen_tag(machine_id: str, report_id: str) -> str:
    """The one-way tag a report stored without its machine keeps: equal for a resend of the
    same report by the same machine, and telling nothing about the machine by itself."""
    return hashlib.sha256(f"{machine_id}/{report_id}".encode()).hexdigest()[:32]


class StoreError(Exception):
    """The database cannot be opened, migrated or used."""


class MachineForgotten(StoreError):
    """A report from a machine that proved a deletion request less than 30 days ago."""


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
    """One request's reports. ``env=None`` stores no machine: only ``seen`` tags and refusals."""

    app: str
    machine_id: str
    env: Environment | None
    reports: Sequence[ReportRows]


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    #: The sum of the counter values stored (the server's metrics count it per app).
    values: int = 0


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
NameTotalRow = tuple[str, str, int]  # app, name, total

_MACHINES_BY = {
    dimension: (
        f"SELECT app, COALESCE({dimension}, '(none)'), COUNT(DISTINCT machine_id) FROM reports"  # noqa: S608 - dimension comes from this fixed tuple
        " WHERE day >= ? AND day <= ? AND (CAST(? AS TEXT) IS NULL OR app = ?)"
        f" GROUP BY app, {dimension} ORDER BY app, 3 DESC, 2"
    )
    for dimension in ("app_version", "os", "python")
}

#: The last day any query reads when the caller gives no upper bound.
NO_END = "9999-12-31"


class KnownNames:
    """Names this process has seen stored per (app, day): a positive cache, so a request whose
    names are all known costs no query for the cap. Names are never removed from the ledger, so
    a stale entry is impossible; the cache is bounded and simply cleared when full."""

    def __init__(self, limit: int = 200_000) -> None:
        self._known: dict[tuple[str, str], set[str]] = {}
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()

    def missing(self, app: str, day: str, names: set[str]) -> set[str]:
        with self._lock:
            return names - self._known.get((app, day), set())

    def add(self, app: str, day: str, names: set[str]) -> None:
        with self._lock:
            if self._size + len(names) > self._limit:
                self._known.clear()
                self._size = 0
            known = self._known.setdefault((app, day), set())
            before = len(known)
            known |= names
            self._size += len(known) - before


class SQLStore:
    """The storage rules, over any DB-API connection with ``?`` placeholders."""

    backend = "sql"
    #: The auto-numbered primary key column type (``{serial}`` in :data:`MIGRATIONS`).
    serial = "INTEGER PRIMARY KEY"
    #: Appended to the SELECT that locks a name_days row (PostgreSQL); SQLite's writer holds
    #: the database lock already.
    for_update = ""
    readonly = False
    names_per_app_day = NAMES_PER_APP_DAY
    #: A query counting the tables named "meta" the store can see.
    meta_exists = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"

    def __init__(self) -> None:  # pragma: no cover - subclasses call _init_state
        self._init_state()

    def _init_state(self) -> None:
        self._known_names = KnownNames()

    @contextmanager
    def transaction(self) -> Iterator[Executor]:  # pragma: no cover - overridden
        """A write transaction."""
        raise NotImplementedError
        yield

    @contextmanager
    def reading(self) -> Iterator[Executor]:  # pragma: no cover - overridden
        """A read-only snapshot that never waits for a writer."""
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
                    tx.execute(statement.replace("{serial}", self.serial))
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        return found

    def check_schema(self) -> None:
        """For a read-only store: the schema must be exactly this version (nothing is migrated)."""
        with self.reading() as tx:
            exists = int(tx.execute(self.meta_exists).fetchall()[0][0])
        if not exists:
            raise StoreError("not a telemetry_rollup database (no schema version)")
        found = self.schema_version()
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this tool's ({SCHEMA_VERSION});"
                " upgrade telemetry-rollup"
            )
        if found < SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is older than this tool's ({SCHEMA_VERSION});"
                " start the server (serve) on it once to migrate it"
            )

    def schema_version(self) -> int:
        with self.reading() as tx:
            rows = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else 0

    def ping(self) -> None:
        """A read on a reader connection: it answers while a writer holds the write lock."""
        with self.reading() as tx:
            tx.execute("SELECT 1").fetchall()

    # -- writes -------------------------------------------------------------------------
    def ingest(self, batch: Ingest, now: float) -> IngestResult:
        """Store a request's new reports in one transaction; see the module docstring."""
        duplicates = 0
        refused: dict[tuple[str, str], int] = {}
        env = batch.env
        with self.transaction() as tx:
            legacy_forgotten = False
            if env is not None:
                forgotten = self._forgotten(tx, batch.app, batch.machine_id, now)
                if forgotten == "proven":
                    raise MachineForgotten(batch.app)
                legacy_forgotten = forgotten == "unproven"
            new: list[ReportRows] = []  # every new report (its refusals are counted)
            stored_rows: list[tuple[int, ReportRows]] = []  # new reports stored with their machine
            for report in sorted(batch.reports, key=lambda r: r.id):
                tag = seen_tag(batch.machine_id, report.id)
                if env is None:
                    cur = tx.execute(
                        "INSERT INTO seen (app, tag, day) VALUES (?, ?, ?) ON CONFLICT (app, tag) DO NOTHING",
                        (batch.app, tag, report.day),
                    )
                    if cur.rowcount == 1:
                        new.append(report)
                    else:
                        duplicates += 1
                    continue
                if (
                    legacy_forgotten
                    and tx.execute("SELECT 1 FROM seen WHERE app = ? AND tag = ?", (batch.app, tag)).fetchall()
                ):
                    # Forgotten without proof (wire format 1): the machine may report again, but
                    # a late resend of what it sent before the deletion is still a duplicate.
                    duplicates += 1
                    continue
                rows = tx.execute(
                    "INSERT INTO reports (app, machine_id, id, day, app_version, lib_version, os, arch, python, ci)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app, machine_id, id) DO NOTHING RETURNING rid",
                    (
                        batch.app,
                        batch.machine_id,
                        report.id,
                        report.day,
                        env.app_version,
                        env.lib_version,
                        env.os,
                        env.arch,
                        env.python,
                        1 if env.ci else 0,
                    ),
                ).fetchall()
                if rows:
                    new.append(report)
                    stored_rows.append((int(rows[0][0]), report))
                else:
                    duplicates += 1
            stored = len(new)
            counts = self._capped_counts(tx, batch.app, [r for _, r in stored_rows])
            values = [
                (rid, name, value) for rid, report in stored_rows for name, value in sorted(counts[report.id].items())
            ]
            if values:
                tx.executemany("INSERT INTO counts (rid, name, value) VALUES (?, ?, ?)", values)
            for report in new:
                reasons = dict(report.refused)
                if report.id in counts and FOLDED_NAME in counts[report.id]:
                    reasons["names_over_cap"] = len(report.counts) - len(counts[report.id]) + 1
                for reason, n in reasons.items():
                    if n:
                        key = (report.day, reason)
                        refused[key] = refused.get(key, 0) + n
            for (day, reason), n in sorted(refused.items()):
                tx.execute(
                    "INSERT INTO refusals (app, day, reason, n) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (app, day, reason) DO UPDATE SET n = refusals.n + excluded.n",
                    (batch.app, day, reason, n),
                )
        return IngestResult(stored=stored, duplicates=duplicates, values=sum(row[2] for row in values))

    def _capped_counts(self, tx: Executor, app: str, reports: list[ReportRows]) -> dict[str, dict[str, int]]:
        """Each new report's counts with names beyond the day's cap folded into FOLDED_NAME."""
        by_day: dict[str, set[str]] = {}
        for report in reports:
            by_day.setdefault(report.day, set()).update(report.counts)
        allowed: dict[str, set[str]] = {}
        for day in sorted(by_day):
            names = by_day[day]
            missing = self._known_names.missing(app, day, names)
            if not missing:
                allowed[day] = names
                continue
            # Lock the day's row first (PostgreSQL: FOR UPDATE), so two requests bringing new
            # names for the same app and day take turns and the cap holds exactly.
            tx.execute(
                "INSERT INTO name_days (app, day, n) VALUES (?, ?, 0) ON CONFLICT (app, day) DO NOTHING", (app, day)
            )
            n = int(
                tx.execute(
                    "SELECT n FROM name_days WHERE app = ? AND day = ?" + self.for_update,  # noqa: S608 - a constant
                    (app, day),
                ).fetchall()[0][0]
            )
            known = self._names_known(tx, app, day, sorted(missing))
            fresh = sorted(missing - known)
            room = max(0, self.names_per_app_day - n)
            admitted = fresh[:room]
            if admitted:
                tx.executemany("INSERT INTO names (app, day, name) VALUES (?, ?, ?)", [(app, day, x) for x in admitted])
                tx.execute("UPDATE name_days SET n = n + ? WHERE app = ? AND day = ?", (len(admitted), app, day))
            ok = (names - missing) | known | set(admitted)
            allowed[day] = ok
            # Only names already in the ledger are cached: this transaction may still roll back.
            self._known_names.add(app, day, (names - missing) | known)
        out: dict[str, dict[str, int]] = {}
        for report in reports:
            ok = allowed[report.day]
            kept = {name: v for name, v in report.counts.items() if name in ok}
            extra = sum(v for name, v in report.counts.items() if name not in ok)
            if len(kept) < len(report.counts):
                kept[FOLDED_NAME] = extra
            out[report.id] = kept
        return out

    @staticmethod
    def _names_known(tx: Executor, app: str, day: str, names: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = tx.execute(
                f"SELECT name FROM names WHERE app = ? AND day = ? AND name IN ({marks})",  # noqa: S608 - placeholders only
                (app, day, *chunk),
            ).fetchall()
            known.update(str(r[0]) for r in rows)
        return known

    def forget(self, app: str, machine_id: str, now: float, today: str, *, proven: bool = True) -> bool:
        """Delete everything stored for the machine; True when that removed something.

        Only a deletion that removed something is counted (a flood of requests for random ids
        counts nothing and writes nothing). A ``proven`` request (wire format 2) also refuses
        the machine's reports for 30 days; an unproven one (format 1, which anyone knowing the
        id can send) erases but never silences. The reports keep their ``seen`` tags."""
        cutoff = int(now) - FORGET_SECONDS
        with self.transaction() as tx:
            tx.execute("DELETE FROM forgotten WHERE since < ?", (cutoff,))
            rows = tx.execute(
                "SELECT rid, id, day FROM reports WHERE app = ? AND machine_id = ? ORDER BY id", (app, machine_id)
            ).fetchall()
            if not rows:
                return False
            tx.executemany(
                "INSERT INTO seen (app, tag, day) VALUES (?, ?, ?) ON CONFLICT (app, tag) DO NOTHING",
                [(app, seen_tag(machine_id, str(rid_id)), day) for _, rid_id, day in rows],
            )
            tx.execute(
                "DELETE FROM counts WHERE rid IN (SELECT rid FROM reports WHERE app = ? AND machine_id = ?)",
                (app, machine_id),
            )
            tx.execute("DELETE FROM reports WHERE app = ? AND machine_id = ?", (app, machine_id))
            tx.execute(
                "INSERT INTO forgotten (app, machine_id, since, proven) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (app, machine_id) DO UPDATE SET since = excluded.since,"
                " proven = CASE WHEN forgotten.proven > excluded.proven THEN forgotten.proven ELSE excluded.proven END",
                (app, machine_id, int(now), 1 if proven else 0),
            )
            tx.execute(
                "INSERT INTO deletions (app, day, n) VALUES (?, ?, 1)"
                " ON CONFLICT (app, day) DO UPDATE SET n = deletions.n + 1",
                (app, today),
            )
        return True

    def is_forgotten(self, app: str, machine_id: str, now: float) -> bool:
        """Whether reports from this machine are refused (a proven deletion request)."""
        with self.reading() as tx:
            return self._forgotten(tx, app, machine_id, now) == "proven"

    @staticmethod
    def _forgotten(tx: Executor, app: str, machine_id: str, now: float) -> str:
        rows = tx.execute(
            "SELECT proven FROM forgotten WHERE app = ? AND machine_id = ? AND since >= ?",
            (app, machine_id, int(now) - FORGET_SECONDS),
        ).fetchall()
        if not rows:
            return ""
        return "proven" if int(rows[0][0]) else "unproven"

    # -- reads (plain tuples; report.py shapes them) --------------------------------------
    def daily_counts(
        self, app: str | None, since: str, until: str = NO_END, names: Sequence[str] | None = None
    ) -> list[DailyRow]:
        """Per (app, day, name): total and distinct machines; ``names`` narrows to those names."""
        sql = (
            "SELECT r.app, r.day, c.name, SUM(c.value), COUNT(DISTINCT r.machine_id)"
            " FROM counts c JOIN reports r ON r.rid = c.rid"
            " WHERE r.day >= ? AND r.day <= ? AND (CAST(? AS TEXT) IS NULL OR r.app = ?)"
        )
        params: list[Any] = [since, until, app, app]
        if names is not None:
            if not names:
                return []
            sql += f" AND c.name IN ({', '.join('?' * len(names))})"
            params += list(names)
        sql += " GROUP BY r.app, r.day, c.name ORDER BY r.app, r.day, c.name"
        with self.reading() as tx:
            rows = tx.execute(sql, params).fetchall()
        return [(a, d, n, int(t), int(m)) for a, d, n, t, m in rows]

    def name_totals(self, app: str, since: str, until: str = NO_END) -> list[NameTotalRow]:
        """Per counter name of one app: its total over the days, largest first."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT r.app, c.name, SUM(c.value) FROM counts c JOIN reports r ON r.rid = c.rid"
                " WHERE r.app = ? AND r.day >= ? AND r.day <= ? GROUP BY r.app, c.name ORDER BY 3 DESC, 2",
                (app, since, until),
            ).fetchall()
        return [(a, n, int(t)) for a, n, t in rows]

    def apps(self, since: str, until: str = NO_END) -> list[str]:
        """Every app with reports, refusals or deletions in the days, sorted."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT DISTINCT app FROM reports WHERE day >= ? AND day <= ?"
                " UNION SELECT DISTINCT app FROM refusals WHERE day >= ? AND day <= ?"
                " UNION SELECT DISTINCT app FROM deletions WHERE day >= ? AND day <= ? ORDER BY 1",
                (since, until, since, until, since, until),
            ).fetchall()
        return [str(a) for (a,) in rows]

    def machines_per_day(self, app: str | None, since: str, until: str = NO_END) -> list[tuple[str, str, int]]:
        """(app, day, distinct machine ids that sent a report for that day)."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT app, day, COUNT(DISTINCT machine_id) FROM reports WHERE day >= ? AND day <= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) GROUP BY app, day ORDER BY app, day",
                (since, until, app, app),
            ).fetchall()
        return [(a, d, int(m)) for a, d, m in rows]

    def machines_by(self, dimension: str, app: str | None, since: str, until: str = NO_END) -> list[MachinesRow]:
        sql = _MACHINES_BY[dimension]
        with self.reading() as tx:
            rows = tx.execute(sql, (since, until, app, app)).fetchall()
        return [(a, str(v), int(m)) for a, v, m in rows]

    def refusals(self, app: str | None, since: str, until: str = NO_END) -> list[RefusalRow]:
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT app, day, reason, n FROM refusals WHERE day >= ? AND day <= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) ORDER BY app, day, reason",
                (since, until, app, app),
            ).fetchall()
        return [(a, d, r, int(n)) for a, d, r, n in rows]

    def deletions(self, app: str | None, since: str, until: str = NO_END) -> list[DeletionRow]:
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT app, day, n FROM deletions WHERE day >= ? AND day <= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?) ORDER BY app, day",
                (since, until, app, app),
            ).fetchall()
        return [(a, d, int(n)) for a, d, n in rows]

    def report_ids(self, app: str) -> list[tuple[str, str, str]]:
        """(id, machine_id, day) of every report of an app stored with its machine; for tests and audits."""
        with self.reading() as tx:
            rows = tx.execute("SELECT id, machine_id, day FROM reports WHERE app = ? ORDER BY id", (app,)).fetchall()
        return [(str(i), str(m), str(d)) for i, m, d in rows]

    def seen_tags(self, app: str) -> list[str]:
        """The tags of an app's reports kept without their machine; for tests and audits."""
        with self.reading() as tx:
            rows = tx.execute("SELECT tag FROM seen WHERE app = ? ORDER BY tag", (app,)).fetchall()
        return [str(t) for (t,) in rows]


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

    def __init__(self, path: Path, pool_size: int = 8, *, readonly: bool = False) -> None:
        self._init_state()
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
        base = "file:" + urllib_quote(str(self.path.resolve())) + "?mode=ro"
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
        with self._write_lock, self._writers.connection() as conn:
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

    @contextmanager
    def reading(self) -> Iterator[Executor]:
        with self._readers.connection() as conn:
            try:
                conn.execute("BEGIN")  # deferred: one snapshot from the first SELECT to COMMIT
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}") from None
            try:
                yield _SQLiteExecutor(conn)
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"SQLite: {exc}") from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        self._writers.close()
        self._readers.close()


def urllib_quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path)


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a SQLite URL (sqlite:///file.db or sqlite:////abs/file.db): {redact_url(url)}")
    return Path(url[len(prefix) :])


def default_db_url() -> str:
    """A SQLite file under the user's data directory (created by :func:`open_store`)."""
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("telemetry-rollup")) / "server.db")


def redact_url(url: str) -> str:
    """A database URL fit for an error message: any password (``user:PW@``) replaced by ``***``,
    and nothing of an unparseable URL beyond its scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)" if "@" in url or ":" in url else url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    tail_clean = tail.split("?", 1)[0]  # query parameters may hold a password too
    return f"{scheme}://{authority}{slash}{tail_clean}"


def check_db_url(url: str) -> None:
    """Raise ValueError for a URL that names no supported backend (never echoing a password)."""
    if url.startswith(("postgresql://", "postgres://")):
        return
    if url.startswith("sqlite:"):
        sqlite_path_from_url(url)
        return
    scheme = url.partition("://")[0] if "://" in url else ""
    what = f"scheme {scheme!r}" if scheme and scheme.replace("+", "").isalnum() else "URL"
    raise ValueError(f"unsupported database {what}: use sqlite:///file.db, sqlite:////abs/file.db or postgresql://…")


def open_store(url: str, *, create: bool = True, readonly: bool = False) -> SQLStore:
    """Open the store a URL names. The server migrates it; ``readonly`` (``report``) opens it
    without writing anything, the schema included, and refuses a schema of another version.
    ``create=False`` refuses a missing SQLite file."""
    check_db_url(url)
    store: SQLStore
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg is an optional extra, loaded only for a postgresql:// URL.
        from telemetry_rollup.server.store_pg import PostgresStore

        store = PostgresStore(url, readonly=readonly)
    else:
        path = sqlite_path_from_url(url)
        if not path.exists():
            if not create or readonly:
                raise StoreError(f"no database at {path}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from None
        store = SQLiteStore(path, readonly=readonly)
    try:
        if readonly:
            store.check_schema()
        else:
            store.migrate()
    except BaseException:
        store.close()
        raise
    return store
