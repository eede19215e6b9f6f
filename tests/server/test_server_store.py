"""The storage rules, against SQLite and (with TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from server_helpers import day, new_id

from telemetry_rollup.server.store import (
    FOLDED_NAME,
    FORGET_SECONDS,
    SCHEMA_VERSION,
    Environment,
    Ingest,
    MachineForgotten,
    ReportRows,
    SQLStore,
    StoreError,
    open_store,
    seen_tag,
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


def test_dedup_by_app_machine_and_report_id(store: SQLStore, app_name: str) -> None:
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


def test_a_report_id_taken_first_by_another_machine_does_not_discard_the_real_one(
    store: SQLStore, app_name: str
) -> None:
    # The id is shown by `show` before it is sent; someone who reads it sends a zero report first.
    victim, forger, rid = new_id(), new_id(), new_id()
    assert store.ingest(batch(app_name, forger, ReportRows(rid, day(-1), {"build": 0})), time.time()).stored == 1
    result = store.ingest(batch(app_name, victim, ReportRows(rid, day(-1), {"build": 30})), time.time())
    assert (result.stored, result.duplicates) == (1, 0)
    assert store.daily_counts(app_name, SINCE) == [(app_name, day(-1), "build", 30, 2)]


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
    report, machine = ReportRows(new_id(), day(-1), {"ok": 1}, {"counter_not_allowed": 2}), new_id()
    store.ingest(batch(app_name, machine, report), time.time())
    store.ingest(batch(app_name, machine, report), time.time())
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
    assert gone not in {m for _, m, _ in store.report_ids(app_name)}  # no row names the machine
    assert store.seen_tags(app_name) == [seen_tag(gone, old.id)]  # a one-way tag is all that is left
    assert [v for _, _, v, _ in store.machines_by("os", app_name, SINCE)] == ["linux"]
    with pytest.raises(MachineForgotten):
        store.ingest(batch(app_name, gone, ReportRows(new_id(), day(-1), {"x": 1})), now + 60)
    # After 30 days the machine may report again.
    later = now + FORGET_SECONDS + 60
    assert store.ingest(batch(app_name, gone, ReportRows(new_id(), day(-1), {"x": 1})), later).stored == 1


def test_an_unproven_deletion_erases_but_does_not_silence(store: SQLStore, app_name: str) -> None:
    # Wire format 1 carries no proof: anyone who knows the id can send it. It erases what is
    # stored (the user's request, if it is theirs) but the machine keeps reporting, and a late
    # resend of a report stored before the deletion is still a duplicate.
    machine = new_id()
    old = ReportRows(new_id(), day(-2), {"build": 5})
    store.ingest(batch(app_name, machine, old), time.time())
    now = time.time()
    assert store.forget(app_name, machine, now, day(0), proven=False) is True
    assert store.daily_counts(app_name, SINCE) == []
    result = store.ingest(batch(app_name, machine, old), now + 60)
    assert (result.stored, result.duplicates) == (0, 1)
    fresh = ReportRows(new_id(), day(-1), {"build": 2})
    assert store.ingest(batch(app_name, machine, fresh), now + 60).stored == 1
    assert store.daily_counts(app_name, SINCE) == [(app_name, day(-1), "build", 2, 1)]


def test_deletions_of_unknown_machines_count_and_write_nothing(store: SQLStore, app_name: str) -> None:
    store.ingest(batch(app_name, new_id(), ReportRows(new_id(), day(-1), {"build": 1})), time.time())
    for _ in range(50):
        assert store.forget(app_name, new_id(), time.time(), day(0)) is False
    assert store.deletions(app_name, SINCE) == []
    with store.reading() as tx:
        assert tx.execute("SELECT COUNT(*) FROM forgotten WHERE app = ?", (app_name,)).fetchall()[0][0] == 0


def test_ids_only_ingest_stores_no_machine(store: SQLStore, app_name: str) -> None:
    machine = new_id()
    report = ReportRows(new_id(), day(-1), {}, {"app_version_too_old": 3})
    store.ingest(Ingest(app=app_name, machine_id=machine, env=None, reports=[report]), time.time())
    assert store.report_ids(app_name) == []
    assert store.seen_tags(app_name) == [seen_tag(machine, report.id)]
    assert store.machines_by("app_version", app_name, SINCE) == []
    assert store.refusals(app_name, SINCE) == [(app_name, day(-1), "app_version_too_old", 3)]
    again = store.ingest(Ingest(app=app_name, machine_id=machine, env=None, reports=[report]), time.time())
    assert (again.stored, again.duplicates) == (0, 1)
    assert store.refusals(app_name, SINCE) == [(app_name, day(-1), "app_version_too_old", 3)]


def test_names_per_app_and_day_are_capped_and_the_rest_folded(store: SQLStore, app_name: str) -> None:
    store.names_per_app_day = 5
    first = ReportRows(new_id(), day(-1), {f"a{i}": 1 for i in range(4)})
    store.ingest(batch(app_name, new_id(), first), time.time())
    second = ReportRows(new_id(), day(-1), {"a0": 10, "b1": 2, "b2": 3, "b3": 4})  # room for one new name
    store.ingest(batch(app_name, new_id(), second), time.time())
    other_day = ReportRows(new_id(), day(-2), {"b2": 7})  # each day has its own cap
    store.ingest(batch(app_name, new_id(), other_day), time.time())
    got = {(d, n): t for _, d, n, t, _ in store.daily_counts(app_name, SINCE)}
    assert got == {
        (day(-1), "a0"): 11,
        (day(-1), "a1"): 1,
        (day(-1), "a2"): 1,
        (day(-1), "a3"): 1,
        (day(-1), "b1"): 2,
        (day(-1), FOLDED_NAME): 7,  # b2 and b3: their counts kept, their names not
        (day(-2), "b2"): 7,
    }
    assert store.refusals(app_name, SINCE) == [(app_name, day(-1), "names_over_cap", 2)]
    # A known name stays accepted after the cap is reached.
    store.ingest(batch(app_name, new_id(), ReportRows(new_id(), day(-1), {"b1": 1, "c": 1})), time.time())
    got = {(d, n): t for _, d, n, t, _ in store.daily_counts(app_name, SINCE)}
    assert (got[(day(-1), "b1")], got[(day(-1), FOLDED_NAME)]) == (3, 8)


def test_the_name_cap_holds_under_concurrent_requests(store: SQLStore, app_name: str) -> None:
    store.names_per_app_day = 50
    barrier = threading.Barrier(8)

    def send(k: int) -> None:
        counts = {f"t{k}n{i}": 1 for i in range(20)}
        barrier.wait()
        store.ingest(batch(app_name, new_id(), ReportRows(new_id(), day(-1), counts)), time.time())

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {n for _, _, n, _, _ in store.daily_counts(app_name, SINCE)}
    assert len(names - {FOLDED_NAME}) == 50
    assert sum(t for *_, t, _ in store.daily_counts(app_name, SINCE)) == 160


def test_missing_sqlite_file_is_not_created_for_reading(tmp_path: object) -> None:
    with pytest.raises(StoreError, match="no database"):
        open_store(f"sqlite:///{tmp_path}/absent.db", create=False)


def test_bad_urls() -> None:
    for url in ("mysql://x", "sqlite://", "sqlite:///", "/tmp/x.db"):
        with pytest.raises(ValueError):
            open_store(url)
