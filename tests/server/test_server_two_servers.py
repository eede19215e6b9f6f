"""Several servers, one database: two server processes on 127.0.0.1 and 127.0.0.2 sharing one
PostgreSQL. A report posted to both at once is stored once; the name cap holds across them; rate
limits are per process, as docs/server.md says."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from oracle import SINCE
from server_helpers import day, free_port, new_id, new_key, rollup2, start_server_process

from telemetry_rollup.server.store import FOLDED_NAME, SQLStore, open_store

pytestmark = pytest.mark.postgres
HOSTS = ("127.0.0.1", "127.0.0.2")
CAP = 30
PER_MACHINE = 3


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set (run .ci/postgres.sh)")
    config = tmp_path_factory.mktemp("two") / "config.json"
    limits = {"per_machine": PER_MACHINE, "per_address": 100_000, "names_per_app_day": CAP}
    config.write_text(json.dumps({"limits": limits}))
    procs, urls = [], []
    try:
        for host in HOSTS:
            port = free_port()
            procs.append(start_server_process(url, host=host, port=port, config_path=Path(config)))
            urls.append(f"http://{host}:{port}/v1/rollups")
        yield url, urls
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)


@pytest.fixture
def store(two: tuple[str, list[str]]) -> Iterator[SQLStore]:
    opened = open_store(two[0])
    yield opened
    opened.close()


def at_once(calls: list[tuple[str, dict[str, object]]]) -> list[requests.Response]:
    """POST every (url, body) at the same instant, one thread each."""
    barrier = threading.Barrier(len(calls))
    out: list[requests.Response | None] = [None] * len(calls)

    def post(i: int) -> None:
        url, body = calls[i]
        barrier.wait()
        out[i] = requests.post(url, json=body, timeout=30)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_the_same_report_posted_to_both_at_once_is_stored_once(two: tuple[str, list[str]], store: SQLStore) -> None:
    urls = two[1]
    app = f"t-{uuid.uuid4().hex[:12]}"
    keys = [new_key() for _ in range(12)]
    bodies = [rollup2(app, key, [{"id": new_id(), "day": day(-1), "counts": {"build": 5, "lint": 1}}]) for key in keys]
    # Each body twice to each server, all 48 requests at once.
    answers = at_once([(url, body) for body in bodies for url in urls for _ in range(2)])
    assert {r.status_code for r in answers} == {200}
    assert sum(r.json()["stored"] for r in answers) == len(bodies)
    assert sum(r.json()["duplicates"] for r in answers) == 3 * len(bodies)
    assert store.daily_counts(app, SINCE) == [(app, day(-1), "build", 60, 12), (app, day(-1), "lint", 12, 12)]
    assert store.machines_per_day(app, SINCE) == [(app, day(-1), 12)]
    assert len(store.report_ids(app)) == len(bodies)


def test_the_name_cap_holds_across_servers(two: tuple[str, list[str]], store: SQLStore) -> None:
    urls = two[1]
    app = f"t-{uuid.uuid4().hex[:12]}"
    calls = []
    for i in range(12):
        counts = {f"s{i}n{j}": 1 for j in range(10)}
        calls.append((urls[i % 2], rollup2(app, None, [{"id": new_id(), "day": day(-1), "counts": counts}])))
    answers = at_once(calls)
    assert {r.status_code for r in answers} == {200}
    rows = store.daily_counts(app, SINCE)
    names = {n for _, _, n, _, _ in rows}
    assert len(names - {FOLDED_NAME}) == CAP and FOLDED_NAME in names
    assert sum(t for *_, t, _ in rows) == 120  # every count kept
    assert sum(n for *_, n in store.refusals(app, SINCE)) == 120 - CAP  # names folded, counted


def test_rate_limits_are_per_process(two: tuple[str, list[str]]) -> None:
    """docs/server.md: the limits live in each process's memory; with K servers (or workers) a
    machine may send up to K times the configured number per window."""
    urls = two[1]
    app = f"t-{uuid.uuid4().hex[:12]}"
    key = new_key()

    def send(url: str) -> int:
        body = rollup2(app, key, [{"id": new_id(), "day": day(-1), "counts": {"build": 1}}])
        return requests.post(url, json=body, timeout=30).status_code

    first = [send(urls[0]) for _ in range(PER_MACHINE + 1)]
    second = [send(urls[1]) for _ in range(PER_MACHINE + 1)]
    assert first == [200] * PER_MACHINE + [429]
    assert second == [200] * PER_MACHINE + [429]
