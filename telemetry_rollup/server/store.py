"""Storage: the interface the app and the report use, and the rules it keeps.

The rules, on either backend (``db_sqlite``, ``db_pg``; the SQL is shared, see ``db.py``):

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
* At most ``names_per_app_day`` distinct counter names are stored per app and UTC day
  (``names_cap.py``).
* Forgetting a machine deletes its reports and counts (keeping their ``seen`` tags); a
  request that proved it came from the machine also refuses its reports for 30 days.
* Reads run on their own connections and never wait for the write lock (SQLite in WAL mode
  gives each read a snapshot while one writer commits).
* Nothing about the HTTP request (address, headers, user agent) is ever passed in here.

The schema and its migrations are ``schema.py``. Only the report and the app import this
module; it imports no third-party package (psycopg is loaded for a ``postgresql://`` URL only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from telemetry_rollup.server import schema
from telemetry_rollup.server.db import (
    ADD,
    IGNORE,
    Database,
    Executor,
    StoreError,
    check_db_url,
    day_range,
    default_db_url,
    insert,
    insert_sql,
    is_postgres_url,
    redact_url,
    sqlite_path_from_url,
)
from telemetry_rollup.server.names_cap import FOLDED_NAME, NAMES_PER_APP_DAY, KnownNames, admitted, fold, folded_names
from telemetry_rollup.server.schema import DELETIONS, REFUSALS, SCHEMA_VERSION, SEEN

#: A forgotten machine id is refused for this long, then forgotten itself.
FORGET_SECONDS = 30 * 86400
#: Refusals for apps outside the allowlist are stored under this app, never the client's name.
OTHER_APP = ""
#: The last day any query reads when the caller gives no upper bound.
NO_END = "9999-12-31"

__all__ = [
    "FOLDED_NAME",
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
]


def seen_tag(machine_id: str, report_id: str) -> str:
    """The one-way tag a report stored without its machine keeps: equal for a resend of the
    same report by the same machine, and telling nothing about the machine by itself."""
    return hashlib.sha256(f"{machine_id}/{report_id}".encode()).hexdigest()[:32]


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


DailyRow = tuple[str, str, str, int, int]  # app, day, name, total, machines
MachinesRow = tuple[str, str, int]  # app, value (version/os/python), machines
RefusalRow = tuple[str, str, str, int]  # app, day, reason, n
DeletionRow = tuple[str, str, int]  # app, day, n
NameTotalRow = tuple[str, str, int]  # app, name, total

DIMENSIONS = ("app_version", "os", "python")


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
        duplicates = 0
        refused: dict[tuple[str, str], int] = {}
        env = batch.env
        d = self.dialect
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
                    cur = tx.execute(insert_sql(SEEN, 1, IGNORE), (batch.app, tag, report.day))
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
                    insert_sql(schema.REPORTS, 1, IGNORE) + " RETURNING rid",
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
            names_by_day: dict[str, set[str]] = {}
            for _, report in stored_rows:
                names_by_day.setdefault(report.day, set()).update(report.counts)
            allowed = admitted(tx, d, self._known_names, self.names_per_app_day, batch.app, names_by_day)
            counts = {report.id: fold(report.counts, allowed[report.day]) for _, report in stored_rows}
            values = [
                (rid, name, value) for rid, report in stored_rows for name, value in sorted(counts[report.id].items())
            ]
            insert(tx, d, schema.COUNTS, values)
            for report in new:
                reasons = dict(report.refused)
                folded = folded_names(report.counts, counts.get(report.id, {}))
                if folded:
                    reasons["names_over_cap"] = folded
                for reason, n in reasons.items():
                    if n:
                        key = (report.day, reason)
                        refused[key] = refused.get(key, 0) + n
            rows_refused = [(batch.app, day, reason, n) for (day, reason), n in sorted(refused.items())]
            insert(tx, d, REFUSALS, rows_refused, ADD)
        return IngestResult(stored=len(new), duplicates=duplicates)

    def forget(self, app: str, machine_id: str, now: float, today: str, *, proven: bool = True) -> bool:
        """Delete everything stored for the machine; True when that removed something.

        Only a deletion that removed something is counted (a flood of requests for random ids
        counts nothing and writes nothing). A ``proven`` request (wire format 2) also refuses
        the machine's reports for 30 days; an unproven one (format 1, which anyone knowing the
        id can send) erases but never silences. The reports keep their ``seen`` tags."""
        cutoff = int(now) - FORGET_SECONDS
        d = self.dialect
        with self.transaction() as tx:
            tx.execute("DELETE FROM forgotten WHERE since < ?", (cutoff,))
            rows = tx.execute(
                "SELECT id, day FROM reports WHERE app = ? AND machine_id = ? ORDER BY id", (app, machine_id)
            ).fetchall()
            if not rows:
                return False
            insert(tx, d, SEEN, [(app, seen_tag(machine_id, str(rid)), day) for rid, day in rows], IGNORE)
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
            insert(tx, d, DELETIONS, [(app, today, 1)], ADD)
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
    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self.reading() as tx:
            return tx.execute(sql, params).fetchall()

    def daily_counts(
        self, app: str | None, since: str, until: str = NO_END, names: Sequence[str] | None = None
    ) -> list[DailyRow]:
        """Per (app, day, name): total and distinct machines; ``names`` narrows to those names."""
        cond, params = day_range(since, until, app, "r")
        if names is not None:
            if not names:
                return []
            cond += f" AND c.name IN ({', '.join('?' * len(names))})"
            params += list(names)
        rows = self._rows(
            "SELECT r.app, r.day, c.name, SUM(c.value), COUNT(DISTINCT r.machine_id)"  # noqa: S608 - placeholders
            f" FROM counts c JOIN reports r ON r.rid = c.rid WHERE {cond}"
            " GROUP BY r.app, r.day, c.name ORDER BY r.app, r.day, c.name",
            params,
        )
        return [(a, d, n, int(t), int(m)) for a, d, n, t, m in rows]

    def name_totals(self, app: str, since: str, until: str = NO_END) -> list[NameTotalRow]:
        """Per counter name of one app: its total over the days, largest first."""
        cond, params = day_range(since, until, app, "r")
        rows = self._rows(
            "SELECT r.app, c.name, SUM(c.value) FROM counts c JOIN reports r ON r.rid = c.rid"  # noqa: S608
            f" WHERE {cond} GROUP BY r.app, c.name ORDER BY 3 DESC, 2",
            params,
        )
        return [(a, n, int(t)) for a, n, t in rows]

    def apps(self, since: str, until: str = NO_END) -> list[str]:
        """Every app with reports, refusals or deletions in the days, sorted."""
        cond, params = day_range(since, until, None)
        tables = ("reports", "refusals", "deletions")
        sql = " UNION ".join(f"SELECT DISTINCT app FROM {t} WHERE {cond}" for t in tables)  # noqa: S608 - constants
        return [str(a) for (a,) in self._rows(sql + " ORDER BY 1", params * 3)]

    def machines_per_day(self, app: str | None, since: str, until: str = NO_END) -> list[tuple[str, str, int]]:
        """(app, day, distinct machine ids that sent a report for that day)."""
        cond, params = day_range(since, until, app)
        rows = self._rows(
            f"SELECT app, day, COUNT(DISTINCT machine_id) FROM reports WHERE {cond}"  # noqa: S608
            " GROUP BY app, day ORDER BY app, day",
            params,
        )
        return [(a, d, int(m)) for a, d, m in rows]

    def machines_by(self, dimension: str, app: str | None, since: str, until: str = NO_END) -> list[MachinesRow]:
        if dimension not in DIMENSIONS:
            raise ValueError(dimension)
        cond, params = day_range(since, until, app)
        rows = self._rows(
            f"SELECT app, COALESCE({dimension}, '(none)'), COUNT(DISTINCT machine_id) FROM reports"  # noqa: S608
            f" WHERE {cond} GROUP BY app, {dimension} ORDER BY app, 3 DESC, 2",
            params,
        )
        return [(a, str(v), int(m)) for a, v, m in rows]

    def refusals(self, app: str | None, since: str, until: str = NO_END) -> list[RefusalRow]:
        cond, params = day_range(since, until, app)
        rows = self._rows(f"SELECT app, day, reason, n FROM refusals WHERE {cond} ORDER BY app, day, reason", params)  # noqa: S608
        return [(a, d, r, int(n)) for a, d, r, n in rows]

    def deletions(self, app: str | None, since: str, until: str = NO_END) -> list[DeletionRow]:
        cond, params = day_range(since, until, app)
        rows = self._rows(f"SELECT app, day, n FROM deletions WHERE {cond} ORDER BY app, day", params)  # noqa: S608
        return [(a, d, int(n)) for a, d, n in rows]

    def report_ids(self, app: str) -> list[tuple[str, str, str]]:
        """(id, machine_id, day) of every report of an app stored with its machine; for tests and audits."""
        rows = self._rows("SELECT id, machine_id, day FROM reports WHERE app = ? ORDER BY id", (app,))
        return [(str(i), str(m), str(d)) for i, m, d in rows]

    def seen_tags(self, app: str) -> list[str]:
        """The tags of an app's reports kept without their machine; for tests and audits."""
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
