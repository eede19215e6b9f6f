"""Schema migrations keep what is stored, on SQLite and (with TEST_POSTGRES_URL) PostgreSQL.

A database is built at version 1 with the version-1 statements and rows as the version-1
server wrote them, then opened by the current server code, which migrates it; every figure the
report shows must be the same, and the version-1 rules must still hold where they should.
PostgreSQL runs in a schema of its own (``search_path``), so the shared database is untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from server_helpers import day, new_id

from telemetry_rollup.server.schema import MIGRATIONS
from telemetry_rollup.server.store import (
    SCHEMA_VERSION,
    Environment,
    Ingest,
    MachineForgotten,
    ReportRows,
    SQLStore,
    open_store,
)

SINCE = "2000-01-01"
ENV = Environment("1.4.0", "0.1.0", "linux", "x86_64", "3.11", False)


class V1:
    """Runs SQL against a database at schema version 1, with ``?`` placeholders."""

    def __init__(self, execute: Any) -> None:
        self.execute = execute

    def create(self) -> None:
        for statement in MIGRATIONS[1]:
            self.execute(statement)
        self.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        self.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")

    def report(self, app: str, rid: str, machine: str | None, report_day: str | None, counts: dict[str, int]) -> None:
        env: Sequence[Any] = ("1.4.0", "0.1.0", "linux", "x86_64", "3.11", 0) if machine else (None,) * 6
        self.execute(
            "INSERT INTO reports (app, id, machine_id, day, app_version, lib_version, os, arch, python, ci)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (app, rid, machine, report_day, *env),
        )
        for name, value in counts.items():
            self.execute(
                "INSERT INTO counts (app, report_id, name, value) VALUES (?, ?, ?, ?)", (app, rid, name, value)
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, V1]]:
    if request.param == "sqlite":
        path = tmp_path / "v1.db"
        conn = sqlite3.connect(path, isolation_level=None)
        yield f"sqlite:///{path}", V1(lambda sql, params=(): conn.execute(sql, params))
        conn.close()
        return
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set (run .ci/postgres.sh)")
    import psycopg

    schema = f"mig_{uuid.uuid4().hex[:10]}"
    with closing(psycopg.connect(url, autocommit=True)) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    conn = psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield (
            f"{url}{sep}options={quote(f'-c search_path={schema}')}",
            V1(lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)),
        )
    finally:
        conn.close()
        with closing(psycopg.connect(url, autocommit=True)) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _figures(store: SQLStore) -> dict[str, Any]:
    return {
        "counts": store.daily_counts(None, SINCE),
        "machines": store.machines_per_day(None, SINCE),
        "os": store.machines_by("os", None, SINCE),
        "refusals": store.refusals(None, SINCE),
        "deletions": store.deletions(None, SINCE),
    }


def test_version_1_is_migrated_and_keeps_what_is_stored(v1_url: tuple[str, V1]) -> None:
    url, v1 = v1_url
    v1.create()
    m1, m2, gone = new_id(), new_id(), new_id()
    r1, r2, r3, refused, stripped = (new_id() for _ in range(5))
    v1.report("acme", r1, m1, day(-2), {"build": 3, "lint": 4})
    v1.report("acme", r2, m1, day(-1), {"build": 5})
    v1.report("acme", r3, m2, day(-1), {"build": 7, "test": 1})
    v1.report("other", r1, m2, day(-1), {"x": 2})  # the same id under another app
    v1.report("acme", refused, None, day(-1), {})  # app_version_too_old: id only
    v1.report("acme", stripped, None, None, {})  # a forgotten machine's report
    v1.execute("INSERT INTO refusals (app, day, reason, n) VALUES ('acme', ?, 'app_version_too_old', 3)", (day(-1),))
    v1.execute("INSERT INTO forgotten (app, machine_id, since) VALUES ('acme', ?, ?)", (gone, int(time.time())))
    v1.execute("INSERT INTO deletions (app, day, n) VALUES ('acme', ?, 1)", (day(0),))

    store = open_store(url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        figures = _figures(store)
        assert figures["counts"] == [
            ("acme", day(-2), "build", 3, 1),
            ("acme", day(-2), "lint", 4, 1),
            ("acme", day(-1), "build", 12, 2),
            ("acme", day(-1), "test", 1, 1),
            ("other", day(-1), "x", 2, 1),
        ]
        assert figures["machines"] == [("acme", day(-2), 1), ("acme", day(-1), 2), ("other", day(-1), 1)]
        assert figures["refusals"] == [("acme", day(-1), "app_version_too_old", 3)]
        assert figures["deletions"] == [("acme", day(0), 1)]
        # A resend of a stored report is still a duplicate, now by (app, machine, id).
        result = store.ingest(Ingest("acme", m1, ENV, [ReportRows(r2, day(-1), {"build": 5})]), time.time())
        assert (result.stored, result.duplicates) == (0, 1)
        # The version-1 deletion keeps refusing its machine for its 30 days.
        with pytest.raises(MachineForgotten):
            store.ingest(Ingest("acme", gone, ENV, [ReportRows(new_id(), day(-1), {"x": 1})]), time.time())
        # The names ledger was filled from what is stored: the cap counts them.
        with store.reading() as tx:
            rows = tx.execute("SELECT n FROM name_days WHERE app = 'acme' AND day = ?", (day(-1),)).fetchall()
        assert int(rows[0][0]) == 2
        # Migrating again does nothing, and the figures stay.
        assert store.migrate() == SCHEMA_VERSION
        assert _figures(store) == figures
    finally:
        store.close()


def test_report_reads_without_migrating(v1_url: tuple[str, V1]) -> None:
    from server_helpers import run_cli

    url, v1 = v1_url
    v1.create()
    v1.report("acme", new_id(), new_id(), day(-1), {"build": 3})
    result = run_cli("report", "--db", url)
    assert result.returncode == 1 and "older" in result.stderr and "Traceback" not in result.stderr
    rows = v1.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    found = rows.fetchall() if hasattr(rows, "fetchall") else rows
    assert [tuple(r) for r in found] == [("1",)]
    # Once the server migrated it, report reads it, still without writing.
    open_store(url).close()
    ok = run_cli("report", "--db", url, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert [r["total"] for r in json.loads(ok.stdout)["counts"]] == [3]


def test_version_3_rows_fill_the_machines_days_and_the_daily_figures(
    v1_url: tuple[str, V1], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 3 (one row per report and counter) with a fleet's reports, some
    days sent in several reports, an upgrade mid-day, unknown versions, reports without counts:
    after the migration the daily figures equal a recomputation from what was stored, and the
    store goes on from there (a resend is a duplicate, a new report of a stored day counts its
    machine once)."""
    from oracle import figures, raw_figures, store_figures, workload

    from telemetry_rollup.server import schema
    from telemetry_rollup.server.db_sqlite import DIALECT as SQLITE
    from telemetry_rollup.server.schema import statement

    url, v1 = v1_url
    dialect = SQLITE
    if url.startswith("postgresql"):
        from telemetry_rollup.server.db_pg import DIALECT as dialect
    for version in (1, 2, 3):
        for step in MIGRATIONS[version]:
            assert isinstance(step, str)
            v1.execute(statement(step, dialect))
    v1.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    v1.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
    apps = {"acme": workload(31, "acme", machines=30, days=6), "other": workload(32, "other", machines=5, days=3)}
    for app, (batches, _) in apps.items():
        for b in batches:
            assert b.env is not None
            e = b.env
            for r in b.reports:
                rid = v1.execute(
                    "INSERT INTO reports (app, machine_id, id, day, app_version, lib_version, os, arch, python, ci)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rid",
                    (app, b.machine_id, r.id, r.day, e.app_version, e.lib_version, e.os, e.arch, e.python, int(e.ci)),
                ).fetchall()[0][0]
                for name, value in r.counts.items():
                    v1.execute("INSERT INTO counts (rid, name, value) VALUES (?, ?, ?)", (rid, name, value))
    monkeypatch.setattr(schema, "V4_PAGE", 7)  # pages of 7 machines: 35 machines are 5 pages and a bit
    store = open_store(url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        for app, (_, sent) in apps.items():
            assert store_figures(store, app) == figures(app, sent)
            assert raw_figures(store, app) == figures(app, sent)
        batches, sent = apps["acme"]
        again = store.ingest(batches[0], time.time())
        assert (again.stored, again.duplicates) == (0, len(batches[0].reports))
        late = batches[0].reports[0]
        more = ReportRows(new_id(), late.day, {"late": 1})
        store.ingest(Ingest("acme", batches[0].machine_id, batches[0].env, [more]), time.time())
        assert batches[0].env is not None
        from oracle import Sent

        expected = figures("acme", [*sent, Sent(batches[0].machine_id, late.day, more.counts, batches[0].env)])
        assert store_figures(store, "acme") == expected
    finally:
        store.close()
