"""Storage: the interface the app, the report and the dashboard use, and the rules it keeps.

The rules, on either backend (``db_sqlite``, ``db_pg``; the SQL is shared, see ``db.py``):

* A report is stored once per (app, machine, report id): its key is (app, machine, day, report
  id) (a report's day never changes), and under the machine's lock the store reads what the
  machine stored for those days before it writes, so a resend is a duplicate under concurrency
  too, across server processes as well. A report id alone decides nothing: another machine
  sending the same id (one that read it in ``show``) stores its own report and cannot make the
  real one a duplicate.
* One request is one transaction: all its reports, counts and aggregates land, or none.
* Daily aggregates (``aggregates.py``: per app and day the distinct machines; per name the
  total and the distinct machines; per app version and name the total; per app version, OS
  and Python the distinct machines) are maintained exactly at ingest, and every read uses
  them: a report or a dashboard costs the same for ten machines as for a million.
* Reports stored without their machine (apps not allowed, app versions too old, machines
  forgotten) keep only a one-way tag of (machine, report id) in ``seen``: a resend is still a
  duplicate, and the tag names no machine (:func:`seen_tag`).
* At most ``names_per_app_day`` distinct counter names are stored per app and UTC day
  (``names_cap.py``).
* Forgetting a machine deletes its reports (keeping their ``seen`` tags) and subtracts them
  from the aggregates; a request that proved it came from the machine also refuses its
  reports for 30 days.
* Pruning deletes the raw rows of days older than the retention and keeps their aggregates;
  only days that can receive no more report (:data:`MIN_RETENTION_DAYS`) can be pruned, so
  deduplication and the distinct counts stay exact.
* Reads run on their own connections and never wait for the write lock (SQLite in WAL mode
  gives each read a snapshot while one writer commits).
* Nothing about the HTTP request (address, headers, user agent) is ever passed in here.

The schema and its migrations are ``schema.py``; the writes ``store_write.py``. Only the
report and the app import this module; it imports no third-party package (psycopg is loaded
for a ``postgresql://`` URL only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from telemetry_rollup.server import schema, store_write
from telemetry_rollup.server.aggregates import DIMENSIONS, NO_VERSION, MachineDay
from telemetry_rollup.server.db import (
    Database,
    Executor,
    StoreError,
    check_db_url,
    day_range,
    default_db_url,
    is_postgres_url,
    redact_url,
    sqlite_path_from_url,
)
from telemetry_rollup.server.names_cap import FOLDED_NAME, NAMES_PER_APP_DAY, KnownNames
from telemetry_rollup.server.records import (
    FORGET_SECONDS,
    OTHER_APP,
    Environment,
    Ingest,
    IngestResult,
    ReportRows,
    seen_tag,
)
from telemetry_rollup.server.schema import ALL, MACHINE_DAYS, NO_NAME, SCHEMA_VERSION, day_from_row

#: The last day any query reads when the caller gives no upper bound.
NO_END = "9999-12-31"
#: The shortest retention ``prune`` accepts: a report may be up to 35 days old and 1 day ahead
#: of the server's clock (models.MAX_DAYS_OLD, MAX_DAYS_AHEAD), and several servers' clocks
#: may differ. A day still open to reports keeps its raw rows, so a late report of a machine
#: is still deduplicated and counted once among the day's distinct machines.
MIN_RETENTION_DAYS = 40

__all__ = [
    "DIMENSIONS",
    "FOLDED_NAME",
    "FORGET_SECONDS",
    "MIN_RETENTION_DAYS",
    "NAMES_PER_APP_DAY",
    "OTHER_APP",
    "SCHEMA_VERSION",
    "Environment",
    "Ingest",
    "IngestResult",
    "MachineForgotten",
    "ReportRows",
    "SQLStore",
    "StoreError",
    "check_db_url",
    "default_db_url",
    "open_store",
    "redact_url",
    "seen_tag",
    "sqlite_path_from_url",
]


class MachineForgotten(StoreError):
    """A report from a machine that proved a deletion request less than 30 days ago."""


DailyRow = tuple[str, str, str, int, int]  # app, day, name, total, machines
MachinesRow = tuple[str, str, str, int]  # app, day, value (version/os/python), machines
VersionRow = tuple[str, str, "str | None", str, int]  # app, day, app version, name, total
RefusalRow = tuple[str, str, str, int]  # app, day, reason, n
DeletionRow = tuple[str, str, int]  # app, day, n
NameTotalRow = tuple[str, str, int]  # app, name, total


class SQLStore:
    """The storage rules over a :class:`~telemetry_rollup.server.db.Database`."""

    names_per_app_day = NAMES_PER_APP_DAY

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect
        self.backend = db.dialect.name
        self.readonly = db.readonly
        self._known_names = KnownNames()

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        """A write transaction (for migrations, tests and audits)."""
        with self.db.transaction() as tx:
            yield tx

    @contextmanager
    def reading(self) -> Iterator[Executor]:
        """A read-only snapshot that never waits for a writer."""
        with self.db.reading() as tx:
            yield tx

    def close(self) -> None:
        self.db.close()

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
        return schema.migrate(self.db)

    def check_schema(self) -> None:
        schema.check_schema(self.db)

    def schema_version(self) -> int:
        return schema.schema_version(self.db)

    def ping(self) -> None:
        """A read on a reader connection: it answers while a writer holds the write lock."""
        with self.reading() as tx:
            tx.execute("SELECT 1").fetchall()

    # -- writes -------------------------------------------------------------------------
    def ingest(self, batch: Ingest, now: float) -> IngestResult:
        """Store a request's new reports in one transaction; see the module docstring."""
        result = self.ingest_many([batch], now)[0]
        if result is None:
            raise MachineForgotten(batch.app)
        return result

    def ingest_many(self, batches: Sequence[Ingest], now: float) -> list[IngestResult | None]:
        """Store many requests in one transaction, by the same code as :meth:`ingest` (bulk
        loads; the fleet benchmark). None for a batch whose machine is refused."""
        with self.transaction() as tx:
            return store_write.ingest(tx, self.dialect, self._known_names, self.names_per_app_day, batches, now)

    def forget(self, app: str, machine_id: str, now: float, today: str, *, proven: bool = True) -> bool:
        """Delete everything stored for the machine; True when that removed something.

        Only a deletion that removed something is counted (a flood of requests for random ids
        counts nothing and writes nothing). A ``proven`` request (wire format 2) also refuses
        the machine's reports for 30 days; an unproven one (format 1, which anyone knowing the
        id can send) erases but never silences. Its reports leave the aggregates too; days
        already pruned hold only aggregates, which name no machine, and keep its share."""
        with self.transaction() as tx:
            return store_write.forget(tx, self.dialect, app, machine_id, now, today, proven)

    def prune(self, older_than_days: int, today: date) -> int:
        """Delete the raw rows of days before ``today - older_than_days`` (UTC), keeping their
        aggregates; return the machines' days deleted. One transaction per day, oldest first."""
        if older_than_days < MIN_RETENTION_DAYS:
            raise ValueError(f"the retention must be at least {MIN_RETENTION_DAYS} days")
        before = (today - timedelta(days=older_than_days)).isoformat()
        with self.reading() as tx:
            days = {
                str(d)
                for table in ("machine_days", "reports", "seen", "names")
                for (d,) in tx.execute(f"SELECT DISTINCT day FROM {table} WHERE day < ?", (before,)).fetchall()  # noqa: S608
            }
        deleted = 0
        for day in sorted(days):
            with self.transaction() as tx:
                n = store_write.prune_day(tx, self.dialect, day)
            if n is None:
                break  # another process is pruning
            deleted += n
        return deleted

    def is_forgotten(self, app: str, machine_id: str, now: float) -> bool:
        """Whether reports from this machine are refused (a proven deletion request)."""
        with self.reading() as tx:
            rows = tx.execute(
                "SELECT proven FROM forgotten WHERE app = ? AND machine_id = ? AND since >= ?",
                (app, machine_id, int(now) - FORGET_SECONDS),
            ).fetchall()
        return bool(rows) and bool(int(rows[0][0]))

    # -- reads: the aggregates only (plain tuples; report.py and dashboard.py shape them) -----
    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self.reading() as tx:
            return tx.execute(sql, params).fetchall()

    def daily_counts(
        self, app: str | None, since: str, until: str = NO_END, names: Sequence[str] | None = None
    ) -> list[DailyRow]:
        """Per (app, day, name): total and distinct machines; ``names`` narrows to those names."""
        cond, params = day_range(since, until, app)
        if names is not None:
            if not names:
                return []
            cond += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        rows = self._rows(
            "SELECT app, day, name, total, machines FROM daily"  # noqa: S608 - placeholders only
            f" WHERE dimension = ? AND value = ? AND {cond} AND name <> ? AND machines > 0 ORDER BY app, day, name",
            [ALL, ALL, *params, NO_NAME],
        )
        return [(a, d, n, int(t), int(m)) for a, d, n, t, m in rows]

    def daily_totals(self, app: str | None, since: str, until: str = NO_END) -> list[VersionRow]:
        """Per (app, day, app version, name): the total (app version None when unknown); for
        exports, which label a total with its app's version."""
        cond, params = day_range(since, until, app)
        rows = self._rows(
            "SELECT app, day, value, name, total FROM daily"  # noqa: S608 - placeholders only
            f" WHERE dimension = ? AND {cond} AND name <> ? AND total <> 0 ORDER BY app, day, value, name",
            ["app_version", *params, NO_NAME],
        )
        return [(a, d, None if v == NO_VERSION else v, n, int(t)) for a, d, v, n, t in rows]

    def name_totals(self, app: str, since: str, until: str = NO_END) -> list[NameTotalRow]:
        """Per counter name of one app: its total over the days, largest first."""
        cond, params = day_range(since, until, app)
        rows = self._rows(
            "SELECT app, name, SUM(total) FROM daily"  # noqa: S608 - placeholders only
            f" WHERE dimension = ? AND value = ? AND {cond} AND name <> ? AND machines > 0"
            " GROUP BY app, name ORDER BY 3 DESC, 2",
            [ALL, ALL, *params, NO_NAME],
        )
        return [(a, n, int(t)) for a, n, t in rows]

    def apps(self, since: str, until: str = NO_END) -> list[str]:
        """Every app with reports, refusals or deletions in the days, sorted."""
        cond, params = day_range(since, until, None)
        sql = (
            "SELECT app FROM daily WHERE dimension = ? AND value = ? AND name = ?"  # noqa: S608 - placeholders only
            f" AND {cond} AND machines > 0"
            f" UNION SELECT app FROM refusals WHERE {cond} UNION SELECT app FROM deletions WHERE {cond} ORDER BY 1"
        )
        return [str(a) for (a,) in self._rows(sql, [ALL, ALL, NO_NAME, *params, *params, *params])]

    def machines_per_day(self, app: str | None, since: str, until: str = NO_END) -> list[tuple[str, str, int]]:
        """(app, day, distinct machine ids that sent a report for that day)."""
        return [(a, d, m) for a, d, _, m in self._machines(ALL, app, since, until)]

    def machines_by(self, dimension: str, app: str | None, since: str, until: str = NO_END) -> list[MachinesRow]:
        """(app, day, value, distinct machines that day) for one of :data:`DIMENSIONS`; an
        unknown app version is ``(none)``. Distinct per day: a figure over several days would
        need every machine's days, so the report sums days into machine-days instead."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"not a dimension: {dimension}")
        rows = self._machines(dimension, app, since, until)
        return [(a, d, "(none)" if v == NO_VERSION else v, m) for a, d, v, m in rows]

    def _machines(self, dimension: str, app: str | None, since: str, until: str) -> list[MachinesRow]:
        cond, params = day_range(since, until, app)
        rows = self._rows(
            "SELECT app, day, value, machines FROM daily"  # noqa: S608 - placeholders only
            f" WHERE dimension = ? AND {cond} AND name = ? AND machines > 0 ORDER BY app, day, machines DESC, value",
            [dimension, *params, NO_NAME],
        )
        return [(str(a), str(d), str(v), int(m)) for a, d, v, m in rows]

    def refusals(self, app: str | None, since: str, until: str = NO_END) -> list[RefusalRow]:
        cond, params = day_range(since, until, app)
        rows = self._rows(f"SELECT app, day, reason, n FROM refusals WHERE {cond} ORDER BY app, day, reason", params)  # noqa: S608
        return [(a, d, r, int(n)) for a, d, r, n in rows]

    def deletions(self, app: str | None, since: str, until: str = NO_END) -> list[DeletionRow]:
        cond, params = day_range(since, until, app)
        rows = self._rows(f"SELECT app, day, n FROM deletions WHERE {cond} ORDER BY app, day", params)  # noqa: S608
        return [(a, d, int(n)) for a, d, n in rows]

    # -- raw rows, for tests and audits ---------------------------------------------------
    def report_ids(self, app: str) -> list[tuple[str, str, str]]:
        """(id, machine_id, day) of every report of an app stored with its machine."""
        rows = self._rows("SELECT id, machine_id, day FROM reports WHERE app = ? ORDER BY id", (app,))
        return [(str(i), str(m), str(d)) for i, m, d in rows]

    def machine_days(self, app: str) -> list[tuple[str, MachineDay]]:
        """(machine id, what it sent that day) of every machine's day of an app still held raw."""
        columns = ", ".join(["machine_id", "day", *MACHINE_DAYS.values])
        rows = self._rows(f"SELECT {columns} FROM machine_days WHERE app = ? ORDER BY machine_id, day", (app,))  # noqa: S608
        return [(str(r[0]), day_from_row(r[1:])) for r in rows]

    def seen_tags(self, app: str) -> list[str]:
        """The tags of an app's reports kept without their machine."""
        return [str(t) for (t,) in self._rows("SELECT tag FROM seen WHERE app = ? ORDER BY tag", (app,))]


def open_store(url: str, *, create: bool = True, readonly: bool = False) -> SQLStore:
    """Open the store a URL names. The server migrates it; ``readonly`` (``report``) opens it
    without writing anything, the schema included, and refuses a schema of another version.
    ``create=False`` refuses a missing SQLite file."""
    check_db_url(url)
    db: Database
    if is_postgres_url(url):
        # psycopg is an optional extra, loaded only for a postgresql:// URL.
        from telemetry_rollup.server.db_pg import PostgresDatabase

        db = PostgresDatabase(url, readonly=readonly)
    else:
        from telemetry_rollup.server.db_sqlite import SQLiteDatabase

        path = sqlite_path_from_url(url)
        if not path.exists():
            if not create or readonly:
                raise StoreError(f"no database at {path}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from None
        db = SQLiteDatabase(path, readonly=readonly)
    store = SQLStore(db)
    try:
        if readonly:
            store.check_schema()
        else:
            store.migrate()
    except BaseException:
        store.close()
        raise
    return store
