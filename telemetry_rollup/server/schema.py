"""The store's schema: its tables, their versions, and the migrations between them.

The version lives in the ``meta`` table. The server brings a database to
:data:`SCHEMA_VERSION` when it opens it, keeping every row (:func:`migrate`, one transaction;
on PostgreSQL under an advisory lock, so workers starting together migrate once); ``report``
opens it read-only, migrates nothing and refuses another version (:func:`check_schema`).
Migrations are plain SQL in both dialects; ``{serial}`` and ``{string_agg}`` are the only
words filled in per backend (:class:`~telemetry_rollup.server.db.Dialect`).
"""

from __future__ import annotations

from telemetry_rollup.server.db import Database, Dialect, Executor, StoreError, Table, lock, lock_key

SCHEMA_VERSION = 3

# The tables as the query layer sees them (key columns first).
REPORTS = Table(
    "reports",
    ("app", "machine_id", "id"),
    ("day", "app_version", "lib_version", "os", "arch", "python", "ci"),
)
COUNTS = Table("counts", ("rid", "name"), ("value",))
SEEN = Table("seen", ("app", "tag"), ("day",))
REFUSALS = Table("refusals", ("app", "day", "reason"), ("n",))
FORGOTTEN = Table("forgotten", ("app", "machine_id"), ("since", "proven"))
DELETIONS = Table("deletions", ("app", "day"), ("n",))
NAMES = Table("names", ("app", "day", "name"))
NAME_DAYS = Table("name_days", ("app", "day"), ("n",))

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

#: Arbitrary constant key for the advisory lock around migrations.
_MIGRATION_LOCK = lock_key("telemetry_rollup schema migration")


def statement(sql: str, dialect: Dialect) -> str:
    """A migration statement in ``dialect``."""
    return sql.replace("{serial}", dialect.serial).replace("{string_agg}", dialect.string_agg)


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
            for sql in MIGRATIONS[version]:
                tx.execute(statement(sql, db.dialect))
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
