"""The storage rules, against SQLite and (with TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from server_helpers import day, new_id

from telemetry_rollup.server.store import (
    FORGET_SECONDS,
    SCHEMA_VERSION,
    Environment,
    Ingest,
    MachineForgotten,
    ReportRows,
    SQLStore,
    StoreError,
    open_store,
)

ENV = Environment("1.4.0", "0.1.0", "linux", "x86_64", "3.11", False)
SINCE = "2000-01-01"


def batch(app: str, machine: str, *reports: ReportRows) -> Ingest:
    return Ingest(app=app, machine_id=machine, env=ENV, reports=list(reports))


def test_schema_is_versioned_and_migration_idempotent(db_url: str) -> None:
    first = open_store(db_url)
    try:
        assert first.schema_version() == SCHEMA_VERSION
        assert first.migrate() == SCHEMA_VERSION  # nothing left to do
    finally:
        first.close()
    second = open_store(db_url)
    second.close()


def test_a_newer_schema_is_refused(db_url: str, store: SQLStore) -> None:
    if store.backend == "postgresql":
        pytest.skip("would break the shared PostgreSQL database for other tests")
    with store.transaction() as tx:
        tx.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer"):
        open_store(db_url)


def test_dedup_by_report_id(store: SQLStore, app_name: str) -> None:
    machine, rid = new_id(), new_id()
    report = ReportRows(rid, day(-1), {"build": 3, "lint": 4})
    assert store.ingest(batch(app_name, machine, report), time.time()).stored == 1
    again = ReportRows(rid, day(-1), {"build": 1000})  # same id, other content: ignored
    result = store.ingest(batch(app_name, machine, again), time.time())
    assert (result.stored, result.duplicates) == (0, 1)
    assert store.daily_counts(app_name, SINCE) == [
        (app_name, day(-1), "build", 3, 1),
        (app_name, day(-1), "lint", 4, 1),
    ]
    # The same id under another app is another report.
    assert store.ingest(batch(app_name + "x", machine, report), time.time()).stored == 1


def test_concurrent_identical_ingests_store_once(store: SQLStore, app_name: str) -> None:
    machine = new_id()
    reports = [ReportRows(new_id(), day(-d), {"build": d}) for d in range(1, 6)]
    results = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        # Reversed order in half the threads: the store must not deadlock on lock order.
        order = reports if threading.get_ident() % 2 else list(reversed(reports))
        results.append(store.ingest(batch(app_name, machine, *order), time.time()))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.stored for r in results) == 5
    assert sum(r.duplicates for r in results) == 35
    assert sum(total for *_, total, _ in store.daily_counts(app_name, SINCE)) == 15


def test_refusals_are_counted_once_per_new_report(store: SQLStore, app_name: str) -> None:
    report = ReportRows(new_id(), day(-1), {"ok": 1}, {"counter_not_allowed": 2})
    store.ingest(batch(app_name, new_id(), report), time.time())
    store.ingest(batch(app_name, new_id(), report), time.time())
    assert store.refusals(app_name, SINCE) == [(app_name, day(-1), "counter_not_allowed", 2)]


def test_forget(store: SQLStore, app_name: str) -> None:
    gone, kept = new_id(), new_id()
    old = ReportRows(new_id(), day(-2), {"build": 5})
    store.ingest(batch(app_name, gone, old), time.time())
    store.ingest(batch(app_name, kept, ReportRows(new_id(), day(-2), {"build": 7})), time.time())
    now = time.time()
    assert store.forget(app_name, gone, now, day(0)) is True
    assert store.forget(app_name, gone, now, day(0)) is False  # idempotent, counted once
    assert store.daily_counts(app_name, SINCE) == [(app_name, day(-2), "build", 7, 1)]
    assert store.deletions(app_name, SINCE) == [(app_name, day(0), 1)]
    assert (old.id, None, None) in store.report_ids(app_name)  # id kept, machine and day not
    assert [v for _, v, _ in store.machines_by("os", app_name, SINCE)] == ["linux"]
    with pytest.raises(MachineForgotten):
        store.ingest(batch(app_name, gone, ReportRows(new_id(), day(-1), {"x": 1})), now + 60)
    # After 30 days the machine may report again; its old report is still a duplicate.
    later = now + FORGET_SECONDS + 60
    result = store.ingest(batch(app_name, gone, old), later)
    assert (result.stored, result.duplicates) == (0, 1)
    assert store.ingest(batch(app_name, gone, ReportRows(new_id(), day(-1), {"x": 1})), later).stored == 1


def test_ids_only_ingest_stores_no_machine(store: SQLStore, app_name: str) -> None:
    report = ReportRows(new_id(), day(-1), {}, {"app_version_too_old": 3})
    store.ingest(Ingest(app=app_name, machine_id=None, env=None, reports=[report]), time.time())
    assert store.report_ids(app_name) == [(report.id, None, day(-1))]
    assert store.machines_by("app_version", app_name, SINCE) == []
    assert store.refusals(app_name, SINCE) == [(app_name, day(-1), "app_version_too_old", 3)]


def test_missing_sqlite_file_is_not_created_for_reading(tmp_path: object) -> None:
    with pytest.raises(StoreError, match="no database"):
        open_store(f"sqlite:///{tmp_path}/absent.db", create=False)


def test_bad_urls() -> None:
    for url in ("mysql://x", "sqlite://", "sqlite:///", "/tmp/x.db"):
        with pytest.raises(ValueError):
            open_store(url)
