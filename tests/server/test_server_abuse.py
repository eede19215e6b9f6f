"""Abuse cannot blind the operator: real server processes, real HTTP, real sockets.

Each test is an attack the issue tracker recorded against an earlier version: many names
from two requests, a dashboard that froze /healthz and ingest, reads that waited for the
write lock, a traceback per dropped connection, unthrottled dashboard logins, a date that
made a 500, an app whose only rows are deletions.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import requests
from server_helpers import Server, day, forget2, new_id, new_key, report_json, rollup, rollup2

from telemetry_rollup.server.store import FOLDED_NAME

TOKEN = "dashboard-token-12345"
OPEN = {"limits": {"per_machine": 100_000, "per_address": 100_000}, "dashboard": {"token": TOKEN}}


def _names_body(app: str, first: int, names: int) -> dict[str, Any]:
    """About 55 KB: ``names`` fresh names in reports of 1,000 counters."""
    reports = [
        {"id": new_id(), "day": day(-1), "counts": {f"n{i:05d}": 1 for i in range(s, min(s + 1000, first + names))}}
        for s in range(first, first + names, 1000)
    ]
    return rollup(app, reports=reports)


def _post_compact(server: Server, body: dict[str, Any]) -> requests.Response:
    data = json.dumps(body, separators=(",", ":"))
    assert 50_000 < len(data) < 64 * 1024
    return requests.post(
        server.url + "/v1/rollups", data=data, headers={"Content-Type": "application/json"}, timeout=30
    )


def test_two_requests_cannot_store_ten_thousand_names(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'n.db'}", tmp_path, config={**OPEN})
    try:
        for i in range(2):
            assert _post_compact(server, _names_body("acme", i * 5000, 5000)).status_code == 200
        data = report_json(server, "acme")
        names = {r["name"] for r in data["counts"]}
        assert len(names - {FOLDED_NAME}) == 1000  # the default cap per app and day
        assert sum(r["total"] for r in data["counts"]) == 10_000  # no count lost: folded
        assert [(r["reason"], r["n"]) for r in data["refusals"]] == [("names_over_cap", 9000)]
        page = requests.get(server.url + "/dashboard", params={"token": TOKEN, "app": "acme"}, timeout=30)
        assert page.status_code == 200
        refusals = page.text.split('data-chart="refusals"')[1].split("</figure>")[0]
        assert "names_over_cap" in refusals and ">9,000</text>" in refusals
    finally:
        server.stop()


def test_a_big_dashboard_stays_small_and_never_freezes_health_or_ingest(tmp_path: Path) -> None:
    # An operator who raised the cap: 10,000 names are stored, yet the page stays small, and
    # /healthz and ingest answer while it is built.
    config = {**OPEN, "limits": {**OPEN["limits"], "names_per_app_day": 100_000}}
    server = Server(f"sqlite:///{tmp_path / 'big.db'}", tmp_path, config=config)
    try:
        for i in range(2):
            assert _post_compact(server, _names_body("acme", i * 5000, 5000)).status_code == 200
        assert len({r["name"] for r in report_json(server, "acme")["counts"]}) == 10_000
        stop = threading.Event()
        health: list[float] = []
        ingest: list[tuple[float, int]] = []

        def poll() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                status = requests.get(server.url + "/healthz", timeout=30).status_code
                health.append(time.perf_counter() - t0)
                assert status == 200
                stop.wait(0.02)

        def post() -> None:
            key = new_key()
            while not stop.is_set():
                t0 = time.perf_counter()
                status = server.post(rollup2("other", key)).status_code
                ingest.append((time.perf_counter() - t0, status))
                stop.wait(0.02)

        threads = [threading.Thread(target=poll), threading.Thread(target=post)]
        for t in threads:
            t.start()
        try:
            pages = [
                requests.get(server.url + "/dashboard", params={"token": TOKEN, **p}, timeout=60)
                for p in ({}, {"app": "acme"}, {"app": "acme", "page": "250"}, {"app": "acme", "page": "500"})
            ]
        finally:
            stop.set()
            for t in threads:
                t.join()
        for page in pages:
            assert page.status_code == 200
            assert len(page.content) < 300_000, len(page.content)
        assert 'rel="next"' in pages[1].text and "10,000 counters" in pages[1].text
        assert 'data-chart="counts:n04980"' in pages[2].text  # equal totals: ranked by name
        assert 'rel="next"' not in pages[3].text
        # Measured, not timed to the millisecond: nothing waited for the pages.
        assert health and max(health) < 3.0, (statistics.median(health), max(health))
        assert ingest and all(status == 200 for _, status in ingest)
        assert max(t for t, _ in ingest) < 3.0
    finally:
        server.stop()


def test_reads_never_wait_for_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    server = Server(f"sqlite:///{db}", tmp_path, config=OPEN)
    try:
        assert server.post(rollup("acme")).status_code == 200
        # Another process (here: this test) holds SQLite's write lock.
        other = sqlite3.connect(db, isolation_level=None, timeout=1)
        other.execute("BEGIN IMMEDIATE")
        try:
            t0 = time.monotonic()
            assert requests.get(server.url + "/healthz", timeout=10).text == "ok\n"
            page = requests.get(server.url + "/dashboard", params={"token": TOKEN, "app": "acme"}, timeout=10)
            assert page.status_code == 200 and 'data-chart="counts:build"' in page.text
            assert time.monotonic() - t0 < 5.0  # the writer's busy timeout is 30 s
        finally:
            other.execute("ROLLBACK")
            other.close()
    finally:
        server.stop()


def test_a_client_that_hangs_up_mid_body_leaves_no_trace_in_the_log(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'd.db'}", tmp_path, config=OPEN)
    try:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /v1/rollups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 5000\r\n\r\n{"schema": 1, "app": "acme"'
                )
                time.sleep(0.05)
        assert server.post(rollup("acme")).status_code == 200  # still serving
        time.sleep(0.5)
    finally:
        server.stop()
    output = server.output()
    assert "Traceback" not in output and "ClientDisconnect" not in output, output[-3000:]


def test_failed_dashboard_logins_are_throttled_and_counted(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'l.db'}", tmp_path, config=OPEN)
    url = server.url + "/dashboard"
    try:
        statuses = [requests.get(url, params={"token": f"guess-{i:04d}"}, timeout=10).status_code for i in range(12)]
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429, 429]
        throttled = requests.get(url, params={"token": TOKEN}, timeout=10)  # even the right token waits
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
        # Another address is not throttled, and the page counts what happened.
        other = requests.Session()
        other.mount("http://", _SourceAdapter("127.0.0.5"))
        ok = other.get(url, params={"token": TOKEN}, timeout=10)
        assert ok.status_code == 200
        assert "Failed dashboard logins since the server started: 10; requests throttled: 3." in ok.text
        basic = "Basic " + base64.b64encode(b"ops:wrong").decode()
        assert other.get(url, headers={"Authorization": basic}, timeout=10).status_code == 401
    finally:
        server.stop()
    log = [line for line in server.output().splitlines() if "listening on" not in line]
    assert any("failed login" in line for line in log)  # a summary line, no address
    assert not any("127.0.0" in line for line in log)


def test_bad_dates_are_a_400_naming_the_problem(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, config=OPEN)
    try:
        for params in ({"until": "0001-01-01"}, {"since": "0001-01-01"}, {"until": "2000-01-03", "days": "30"}):
            resp = requests.get(server.url + "/dashboard", params={"token": TOKEN, **params}, timeout=10)
            assert resp.status_code == 400, resp.text
            assert "2000-01-01" in resp.json()["error"]
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_an_app_with_only_deletions_has_its_dashboard_section(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, config=OPEN)
    try:
        key = new_key()
        assert server.post(rollup2("gone", key)).status_code == 200
        assert server.post(forget2("gone", key)).status_code == 200
        assert server.post(rollup("kept")).status_code == 200
        page = requests.get(server.url + "/dashboard", params={"token": TOKEN}, timeout=10).text
        section = page.split('data-app="gone"')[1].split("</section>")[0]
        assert "Deletion requests honoured" in section and f"<td>{day(0)}</td>" in section
    finally:
        server.stop()


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Requests from another loopback address (127.0.0.0/8 is all local on Linux)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)
