"""The daily aggregates on the real backends equal a recomputation from what was sent and from
the raw rows: under concurrent ingest (threads, and two processes with stores of their own),
duplicates, bulk loads, the name cap, and deletion requests."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time

import pytest
from oracle import SINCE, Sent, figures, raw_figures, store_figures, workload
from server_helpers import day, new_id

from telemetry_rollup.server import store_write
from telemetry_rollup.server.db import REPLACE
from telemetry_rollup.server.schema import MACHINE_DAYS
from telemetry_rollup.server.store import FOLDED_NAME, Environment, Ingest, ReportRows, SQLStore, open_store

ENV = Environment("1.4.0", "0.1.0", "linux", "x86_64", "3.11", False)


def assert_exact(store: SQLStore, app: str, sent: list[Sent]) -> None:
    expected = figures(app, sent)
    assert store_figures(store, app) == expected
    assert raw_figures(store, app) == expected


def _send_all(url: str, seed: int, app: str, order: int) -> tuple[int, int]:
    """A process of its own, with its own store, sends the whole workload in its own order."""
    store = open_store(url)
    try:
        batches, _ = workload(seed, app)
        random.Random(order).shuffle(batches)
        results = [store.ingest(b, time.time()) for b in batches]
        return sum(r.stored for r in results), sum(r.duplicates for r in results)
    finally:
        store.close()


def test_concurrent_ingest_with_duplicates_is_exact(db_url: str, store: SQLStore, app_name: str) -> None:
    batches, sent = workload(7, app_name)
    # Every request is sent three times: twice by threads racing each other, once by one of two
    # processes with their own connections (all at once), so each report meets its duplicates.
    work = [b for b in batches for _ in range(2)]
    random.Random(1).shuffle(work)
    results = []
    lock = threading.Lock()

    def thread(part: list[Ingest]) -> None:
        for b in part:
            r = store.ingest(b, time.time())
            with lock:
                results.append(r)

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pending = pool.starmap_async(_send_all, [(db_url, 7, app_name, 11), (db_url, 7, app_name, 12)])
        threads = [threading.Thread(target=thread, args=(work[i::6],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        others = pending.get(timeout=240)
    stored = sum(r.stored for r in results) + sum(s for s, _ in others)
    duplicates = sum(r.duplicates for r in results) + sum(d for _, d in others)
    reports = sum(len(b.reports) for b in batches)
    assert stored == reports and duplicates == 3 * reports  # each stored once, four times sent
    assert_exact(store, app_name, sent)


def test_bulk_ingest_is_the_same_code_and_as_exact(store: SQLStore, app_name: str) -> None:
    batches, sent = workload(8, app_name)
    half = len(batches) // 2
    first = store.ingest_many(batches[:half], time.time())
    # The second bulk repeats the first (duplicates) and adds the rest.
    second = store.ingest_many(batches, time.time())
    assert all(r is not None for r in first + second)
    assert sum(r.stored for r in first if r) + sum(r.stored for r in second if r) == len(sent)
    assert sum(r.duplicates for r in second if r) == sum(len(b.reports) for b in batches[:half])
    assert_exact(store, app_name, sent)


def test_a_request_repeating_a_report_id_stores_it_once(store: SQLStore, app_name: str) -> None:
    machine, rid = new_id(), new_id()
    reports = [ReportRows(rid, day(-1), {"build": 1}), ReportRows(rid, day(-1), {"build": 5})]
    result = store.ingest(Ingest(app_name, machine, ENV, reports), time.time())
    assert (result.stored, result.duplicates) == (1, 1)
    assert store.daily_counts(app_name, SINCE) == [(app_name, day(-1), "build", 1, 1)]


def test_forgetting_a_machine_takes_its_share_out_of_every_figure(store: SQLStore, app_name: str) -> None:
    batches, sent = workload(9, app_name)
    for b in batches:
        store.ingest(b, time.time())
    machines = sorted({s.machine for s in sent})
    gone = machines[:3]
    now = time.time()
    assert store.forget(app_name, gone[0], now, day(0), proven=True)
    assert store.forget(app_name, gone[1], now, day(0), proven=False)
    assert store.forget(app_name, gone[2], now, day(0))
    left = [s for s in sent if s.machine not in gone]
    assert_exact(store, app_name, left)
    assert not {m for m, _ in store.machine_days(app_name)} & set(gone)
    # The figures equal those of a store that never saw the forgotten machines.
    assert store_figures(store, app_name) == figures(app_name, left)
    assert store.deletions(app_name, SINCE) == [(app_name, day(0), 3)]


def test_the_name_cap_under_concurrency_keeps_totals_and_exact_machines(store: SQLStore, app_name: str) -> None:
    store.names_per_app_day = 4
    batches, sent = workload(10, app_name)
    barrier = threading.Barrier(4)

    def thread(part: list[Ingest]) -> None:
        barrier.wait()
        for b in part:
            store.ingest(b, time.time())

    threads = [threading.Thread(target=thread, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Which names were folded depends on the order; the raw rows say, and the figures follow them.
    assert store_figures(store, app_name) == raw_figures(store, app_name)
    per_day: dict[str, set[str]] = {}
    for _, d, name, _, _ in store.daily_counts(app_name, SINCE):
        per_day.setdefault(d, set()).add(name)
    assert all(len(names - {FOLDED_NAME}) <= 4 for names in per_day.values())
    expected = figures(app_name, sent)
    stored = store.daily_counts(app_name, SINCE)
    for d in per_day:  # folding keeps every count
        want = sum(t for _, dd, _, t, _ in expected["counts"] if dd == d)
        assert sum(t for _, dd, _, t, _ in stored if dd == d) == want
    assert store_figures(store, app_name)["machines"] == expected["machines"]


def test_two_reports_of_one_machine_day_in_flight_at_once_both_count_once(
    store: SQLStore, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the machine's day is stored (report A). One transaction adding report B
    is stopped after it read the day and before it writes it back; meanwhile report C of the
    same machine and day arrives. C must wait for B (the machine's lock) and then build on B's
    day; otherwise both read the day without the other, "lint" counts as new twice, and one
    write loses the other's counts."""
    machine, other = new_id(), new_id()
    a, b, c = (ReportRows(new_id(), day(-1), counts) for counts in ({"build": 1}, {"lint": 2}, {"lint": 3, "x": 1}))
    store.ingest(Ingest(app_name, machine, ENV, [a]), time.time())
    # Another machine makes every name known to the cap first, so neither B nor C waits for the
    # cap's row lock: only the machine's own lock can keep them apart.
    warm = [ReportRows(new_id(), day(-1), {"build": 1, "lint": 1, "x": 1}) for _ in range(2)]
    for report in warm:  # the second finds the names in the ledger: the cache knows them
        store.ingest(Ingest(app_name, other, ENV, [report]), time.time())
    paused, go, c_done = threading.Event(), threading.Event(), threading.Event()
    real_insert = store_write.insert

    def insert(tx: object, d: object, table: object, rows: object, on_conflict: str = "") -> None:
        if table is MACHINE_DAYS and on_conflict == REPLACE and threading.current_thread().name == "B":
            paused.set()
            go.wait(10)
        real_insert(tx, d, table, rows, on_conflict)  # type: ignore[arg-type]

    monkeypatch.setattr(store_write, "insert", insert)
    send_b = threading.Thread(target=store.ingest, args=(Ingest(app_name, machine, ENV, [b]), time.time()), name="B")
    send_b.start()
    assert paused.wait(10)

    def send_c() -> None:
        store.ingest(Ingest(app_name, machine, ENV, [c]), time.time())
        c_done.set()

    thread_c = threading.Thread(target=send_c)
    thread_c.start()
    try:
        assert not c_done.wait(1.0)  # C waits for B's transaction
    finally:
        go.set()
        send_b.join(30)
        thread_c.join(30)
    assert c_done.is_set()
    assert_exact(
        store,
        app_name,
        [
            Sent(m, day(-1), r.counts, ENV)
            for m, r in ((machine, a), (machine, b), (machine, c), (other, warm[0]), (other, warm[1]))
        ],
    )
    assert store.daily_counts(app_name, SINCE) == [
        (app_name, day(-1), "build", 3, 2),
        (app_name, day(-1), "lint", 7, 2),
        (app_name, day(-1), "x", 3, 2),
    ]


def test_many_reports_of_one_machine_day_at_once(db_url: str, store: SQLStore, app_name: str) -> None:
    """Forty reports of one machine and day (each with names of its own and shared ones), sent
    by six threads and two processes at once, each twice: one machine, every count once."""
    machine = new_id()
    reports = [ReportRows(new_id(), day(-1), {"build": 1, f"only{i}": i, f"pair{i // 2}": 1}) for i in range(40)]
    batches = [Ingest(app_name, machine, ENV, [r]) for r in reports]
    work = batches * 2
    random.Random(3).shuffle(work)

    def thread(part: list[Ingest]) -> None:
        for one in part:
            store.ingest(one, time.time())

    threads = [threading.Thread(target=thread, args=(work[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_exact(store, app_name, [Sent(machine, day(-1), r.counts, ENV) for r in reports])
    assert store.machines_per_day(app_name, SINCE) == [(app_name, day(-1), 1)]


@pytest.mark.parametrize("dimension", ["app_version", "os", "python"])
def test_machines_by_a_dimension_are_distinct_per_day(store: SQLStore, app_name: str, dimension: str) -> None:
    machine = new_id()
    old = Environment("1.0", "0.1.0", "linux", "x86_64", "3.11", False)
    new = Environment("1.1", "0.1.0", "linux", "x86_64", "3.11", True)
    store.ingest(Ingest(app_name, machine, old, [ReportRows(new_id(), day(-1), {"a": 1})]), time.time())
    store.ingest(Ingest(app_name, machine, new, [ReportRows(new_id(), day(-1), {"a": 1})]), time.time())
    store.ingest(Ingest(app_name, new_id(), old, [ReportRows(new_id(), day(-1), {})]), time.time())
    rows = store.machines_by(dimension, app_name, SINCE)
    if dimension == "app_version":  # the upgraded machine counts under both versions that day
        assert rows == [(app_name, day(-1), "1.0", 2), (app_name, day(-1), "1.1", 1)]
    else:
        assert [m for *_, m in rows] == [2]
    assert store.machines_per_day(app_name, SINCE) == [(app_name, day(-1), 2)]
