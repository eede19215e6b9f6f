"""The store's schema: its tables, their versions, and the migrations between them.

The version lives in the ``meta`` table. The server brings a database to
:data:`SCHEMA_VERSION` when it opens it, keeping every row (:func:`migrate`, one transaction;
on PostgreSQL under an advisory lock, so workers starting together migrate once); ``report``
opens it read-only, migrates nothing and refuses another version (:func:`check_schema`).
Migrations are plain SQL in both dialects (``{serial}`` and ``{without_rowid}`` are the only
words filled in per backend, :class:`~telemetry_rollup.server.db.Dialect`), or a Python step
where rows must be folded as ingest folds them. The row layout of ``machine_days`` and the
writing of aggregates live here too: the migration and the store both use them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from telemetry_rollup.server.aggregates import (
    FIELDS,
    NO_VERSION,
    Contribution,
    Delta,
    MachineDay,
    add_report,
    env_of,
)
from telemetry_rollup.server.db import ADD, Database, Dialect, Executor, StoreError, Table, insert, lock, lock_key

SCHEMA_VERSION = 4

# The tables as the query layer sees them (key columns first).
#: One row per report stored with its machine: its key only, for deduplication (the day first,
#: so pruning a day is one range of the key and needs no other index).
REPORTS = Table("reports", ("day", "app", "machine_id", "id"))
#: One row per (app, machine, day): what the machine sent that day, summed (see day_row).
MACHINE_DAYS = Table(
    "machine_days",
    ("app", "machine_id", "day"),
    ("app_version", "lib_version", "os", "arch", "python", "ci", "more", "counts"),
    ints=("ci",),
)
#: The daily aggregates (aggregates.py), kept when raw rows are pruned: per app and day, for a
#: dimension's value (or :data:`ALL` machines) and a counter name (or :data:`NO_NAME`), the
#: counts' total and the distinct machines. Rows kept: (ALL, ALL, no name): machines that day;
#: (dimension, value, no name): machines by app version, OS, Python; (ALL, ALL, name): a
#: name's total and machines; ("app_version", version, name): its total per version. One
#: table, so an ingest adds to it in one statement; distinct machines are exact wherever kept
#: (never a sum over values: a machine seen with two versions in a day would count twice).
#: The key orders (app, dimension, name, value, day): each read is one range of it (machines by
#: OS never passes the per-version counter rows; a name's days are adjacent).
ALL = "*"  # no app version, OS or Python version is "*" (models.py's patterns)
NO_NAME = ""  # no counter name is empty
DAILY = Table("daily", ("app", "dimension", "name", "value", "day"), ("total", "machines"), ("total", "machines"))
SEEN = Table("seen", ("app", "tag"), ("day",))
REFUSALS = Table("refusals", ("app", "day", "reason"), ("n",), ("n",))
FORGOTTEN = Table("forgotten", ("app", "machine_id"), ("since", "proven"), ("since", "proven"))
DELETIONS = Table("deletions", ("app", "day"), ("n",), ("n",))
NAMES = Table("names", ("app", "day", "name"))
NAME_DAYS = Table("name_days", ("app", "day"), ("n",), ("n",))


def day_row(app: str, machine_id: str, state: MachineDay) -> tuple[Any, ...]:
    """A machine's day as its ``machine_days`` row: the first value of each field in its column
    (readable, and all there is on almost every day), any other values in ``more``, the counts
    per app version as JSON."""
    first = {f: values[0] for f, values in state.env.items()}
    more = {f: values[1:] for f, values in sorted(state.env.items()) if len(values) > 1}
    return (
        app,
        machine_id,
        state.day,
        first["app_version"] or None,
        first["lib_version"],
        first["os"],
        first["arch"],
        first["python"],
        int(first["ci"]),
        json.dumps(more, separators=(",", ":")) if more else None,
        json.dumps(state.counts, separators=(",", ":"), sort_keys=True),
    )


def day_from_row(row: Sequence[Any]) -> MachineDay:
    """The inverse of :func:`day_row`, from its columns after ``app`` and ``machine_id``."""
    day, app_version, lib_version, os_, arch, python, ci, more, counts = row
    values = (app_version or NO_VERSION, lib_version, os_, arch, python, str(int(ci)))
    env = {f: [str(v)] for f, v in zip(FIELDS, values)}
    for f, extra in (json.loads(more) if more else {}).items():
        env[f] += [str(v) for v in extra]
    per = {str(v): {str(n): int(t) for n, t in names.items()} for v, names in json.loads(counts).items()}
    return MachineDay(str(day), env, per)


def apply_delta(tx: Executor, dialect: Dialect, deltas: Mapping[str, Delta]) -> None:
    """Add ``deltas`` (per app) to the daily aggregates, rows sorted by key (the lock order of
    store_write.py)."""
    rows: list[tuple[Any, ...]] = []
    for app, delta in deltas.items():
        p = delta.without_zeros()
        rows += [(app, ALL, NO_NAME, ALL, day, 0, n) for day, n in p.machines.items()]
        rows += [(app, dim, NO_NAME, value, day, 0, n) for (day, dim, value), n in p.env.items()]
        rows += [(app, ALL, name, ALL, day, total, n) for (day, name), (total, n) in p.names.items()]
        rows += [(app, "app_version", name, v, day, total, 0) for (day, v, name), total in p.versions.items()]
    insert(tx, dialect, DAILY, sorted(rows), ADD)  # keys are unique: sorting rows sorts keys


#: Machines read at a time by the migration to version 4.
V4_PAGE = 500


def _v4_from_v3(tx: Executor, dialect: Dialect) -> None:
    """Fold every version-3 report into its machine's day and the aggregates, :data:`V4_PAGE`
    machines at a time (a page never splits a machine; memory follows the page, not the
    database)."""
    deltas: dict[str, Delta] = {}
    last: tuple[str, str] = ("", "")
    while True:
        rows = tx.execute(
            "SELECT r.app, r.machine_id, r.day, r.id, r.app_version, r.lib_version, r.os, r.arch, r.python,"
            " r.ci, c.name, c.value FROM reports r LEFT JOIN counts c ON c.rid = r.rid"
            " WHERE (r.app, r.machine_id) IN (SELECT app, machine_id FROM reports WHERE (app, machine_id) > (?, ?)"
            " GROUP BY app, machine_id ORDER BY app, machine_id LIMIT ?)"
            " ORDER BY r.app, r.machine_id, r.day, r.id",
            (*last, V4_PAGE),
        ).fetchall()
        if not rows:
            break
        reports: dict[tuple[str, str, str, str], tuple[dict[str, str], dict[str, int]]] = {}
        for app, machine, day, rid, version, lib, os_, arch, python, ci, name, value in rows:
            env = env_of(version, lib, os_, arch, python, bool(ci))
            _, counts = reports.setdefault((app, machine, day, rid), (env, {}))
            if name is not None:
                counts[name] = int(value)
        states: dict[tuple[str, str, str], MachineDay] = {}
        for (app, machine, day, _), (env, counts) in reports.items():
            state, change = add_report(states.get((app, machine, day)), Contribution(day, counts, env))
            states[(app, machine, day)] = state
            deltas.setdefault(app, Delta()).add(change)
        insert(tx, dialect, MACHINE_DAYS, [day_row(a, m, s) for (a, m, _), s in sorted(states.items())])
        insert(tx, dialect, Table("report_keys", REPORTS.key), sorted((d, a, m, i) for a, m, d, i in reports))
        last = (str(rows[-1][0]), str(rows[-1][1]))
    apply_delta(tx, dialect, deltas)


MIGRATIONS: dict[int, tuple[str | Callable[[Executor, Dialect], None], ...]] = {
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
    # 4: one raw row per machine and day instead of one per report and counter (a report of 20
    # counters took ~2.8 KB in SQLite and ~4 KB in PostgreSQL), report keys kept apart for
    # deduplication, and the daily aggregates, all filled from the version-3 rows by
    # _v4_from_v3 (Python: the same code as ingest folds them).
    4: (
        """CREATE TABLE machine_days (
            app TEXT NOT NULL, machine_id TEXT NOT NULL, day TEXT NOT NULL,
            app_version TEXT, lib_version TEXT NOT NULL, os TEXT NOT NULL, arch TEXT NOT NULL,
            python TEXT NOT NULL, ci INTEGER NOT NULL, more TEXT, counts TEXT NOT NULL,
            PRIMARY KEY (app, machine_id, day))""",
        "CREATE INDEX machine_days_day ON machine_days (day)",
        """CREATE TABLE report_keys (
            day TEXT NOT NULL, app TEXT NOT NULL, machine_id TEXT NOT NULL, id TEXT NOT NULL,
            PRIMARY KEY (day, app, machine_id, id)){without_rowid}""",
        """CREATE TABLE daily (
            app TEXT NOT NULL, dimension TEXT NOT NULL, value TEXT NOT NULL, day TEXT NOT NULL,
            name TEXT NOT NULL, total BIGINT NOT NULL, machines BIGINT NOT NULL,
            PRIMARY KEY (app, dimension, name, value, day))""",
        "CREATE INDEX seen_day ON seen (day)",
        _v4_from_v3,
        "DROP TABLE counts",
        "DROP TABLE reports",
        "ALTER TABLE report_keys RENAME TO reports",
    ),
}

#: Arbitrary constant key for the advisory lock around migrations.
_MIGRATION_LOCK = lock_key("telemetry_rollup schema migration")


def statement(sql: str, dialect: Dialect) -> str:
    """A migration statement in ``dialect``."""
    return sql.replace("{serial}", dialect.serial).replace("{without_rowid}", dialect.without_rowid)


def _found(tx: Executor) -> int:
    rows = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else 0


def migrate(db: Database) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
    with db.transaction() as tx:
        lock(tx, db.dialect, [_MIGRATION_LOCK])
        tx.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        found = _found(tx)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this server's ({SCHEMA_VERSION});"
                " upgrade telemetry-rollup"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[version]:
                if isinstance(step, str):
                    tx.execute(statement(step, db.dialect))
                else:
                    step(tx, db.dialect)
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found


def schema_version(db: Database) -> int:
    with db.reading() as tx:
        return _found(tx)


def check_schema(db: Database) -> None:
    """For a read-only store: the schema must be exactly this version (nothing is migrated)."""
    with db.reading() as tx:
        exists = int(tx.execute(db.dialect.meta_exists).fetchall()[0][0])
    if not exists:
        raise StoreError("not a telemetry_rollup database (no schema version)")
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {found} is newer than this tool's ({SCHEMA_VERSION}); upgrade telemetry-rollup"
        )
    if found < SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {found} is older than this tool's ({SCHEMA_VERSION});"
            " start the server (serve) on it once to migrate it"
        )
