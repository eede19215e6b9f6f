"""Abuse check for the ingest server (not a test): can a few requests blind the operator?

Starts the real server (``python -m telemetry_rollup.server``, SQLite or PostgreSQL, the
dashboard on) on a free 127.0.0.1 port, then:

1. sends ``--requests`` bodies of about 55 KB, each naming ``--names`` fresh counters
   (5 reports of 1,000 counters, ``n00001``-style names, yesterday), as anyone may;
2. reads back how many distinct names the server stored (``report --format json``);
3. opens the all-apps dashboard and, while it renders, polls ``GET /healthz`` and posts
   ordinary reports (5 s client timeout, the library's own) from other threads;
4. prints the dashboard's time and the server's memory (peak RSS growth, from /proc), the
   worst and median ``/healthz`` latency, and the ingest requests that timed out or failed.

    python benchmarks/server_abuse.py                      # SQLite
    python benchmarks/server_abuse.py --backend postgres   # TEST_POSTGRES_URL
    python benchmarks/server_abuse.py --names-cap 100000   # an operator who raised the cap

Bounded: two attack requests by default, and at most ``--seconds`` of polling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
from bench_server import running_server

TOKEN = "abuse-benchmark-token"  # noqa: S105 - a throwaway dashboard token for this run


def _day(offset: int) -> str:
    return (datetime.now(timezone.utc).date() + timedelta(days=offset)).isoformat()


def _envelope(app: str, machine: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": 1,
        "app": app,
        "app_version": "1.0.0",
        "lib_version": "0.1.0",
        "machine_id": machine,
        "os": "linux",
        "arch": "x86_64",
        "python": "3.11",
        "ci": False,
        "reports": reports,
    }


def attack_body(app: str, first: int, names: int) -> bytes:
    """``names`` fresh counter names in reports of at most 1,000 counters."""
    reports = []
    for start in range(first, first + names, 1000):
        counts = {f"n{i:05d}": 1 for i in range(start, min(start + 1000, first + names))}
        reports.append({"id": str(uuid.uuid4()), "day": _day(-1), "counts": counts})
    return json.dumps(_envelope(app, str(uuid.uuid4()), reports), separators=(",", ":")).encode()


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the server process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def _reset_hwm(pid: int) -> None:
    # Writing 5 to clear_refs resets the peak RSS (Linux >= 4.0), so the peak is this run's.
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def run(db_url: str, opts: argparse.Namespace, workdir: Path) -> None:
    config: dict[str, Any] = {"limits": {"per_machine": 10**6, "per_address": 10**6}, "dashboard": {"token": TOKEN}}
    if opts.names_cap is not None:
        config["limits"]["names_per_app_day"] = opts.names_cap
    app = f"abuse-{uuid.uuid4().hex[:8]}"
    with running_server(db_url, config, workdir, name="abuse") as (base, server):
        _attack(db_url, opts, app, base, server.pid)


def _attack(db_url: str, opts: argparse.Namespace, app: str, base: str, pid: int) -> None:
    headers = {"Content-Type": "application/json"}
    for i in range(opts.requests):
        body = attack_body(app, i * opts.names, opts.names)
        resp = requests.post(base + "/v1/rollups", data=body, headers=headers, timeout=60)
        print(f"attack request {i + 1}: {len(body) / 1000:.1f} KB, {opts.names} names -> HTTP {resp.status_code}")
    env = {**os.environ}
    report = subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "report", "--db", db_url, "--app", app, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    names = {r["name"] for r in json.loads(report.stdout)["counts"]}
    print(f"distinct names stored for the app: {len(names)}")

    rss_before, _ = _rss_kib(pid)
    _reset_hwm(pid)
    stop = threading.Event()
    health: list[float] = []
    ingest: list[float] = []
    failures = {"timeout": 0, "error": 0}

    def poll_health() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                requests.get(base + "/healthz", timeout=opts.seconds)
            except requests.RequestException:
                pass
            health.append(time.perf_counter() - t0)
            stop.wait(0.05)

    def post_reports() -> None:
        session = requests.Session()
        machine = str(uuid.uuid4())
        while not stop.is_set():
            body = _envelope(f"{app}-ok", machine, [{"id": str(uuid.uuid4()), "day": _day(-1), "counts": {"x": 1}}])
            t0 = time.perf_counter()
            try:
                session.post(base + "/v1/rollups", json=body, timeout=5).raise_for_status()
            except requests.Timeout:
                failures["timeout"] += 1
            except requests.RequestException:
                failures["error"] += 1
            ingest.append(time.perf_counter() - t0)
            stop.wait(0.05)

    threads = [threading.Thread(target=poll_health), threading.Thread(target=post_reports)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    try:
        page = requests.get(base + "/dashboard", params={"token": TOKEN, "days": "30"}, timeout=opts.seconds)
        status, size = page.status_code, len(page.content)
    except requests.RequestException as exc:
        status, size = type(exc).__name__, 0
    elapsed = time.perf_counter() - t0
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    rss_after, hwm = _rss_kib(pid)
    print(f"all-apps dashboard: HTTP {status}, {size / 1000:.0f} KB, {elapsed:.2f} s")
    print(
        f"server memory: RSS {rss_before / 1024:.0f} MiB before, peak {hwm / 1024:.0f} MiB during"
        f" (+{(hwm - rss_before) / 1024:.0f} MiB), {rss_after / 1024:.0f} MiB after"
    )
    if health:
        print(
            f"/healthz while it rendered: {len(health)} polls, median {statistics.median(health) * 1000:.0f} ms,"
            f" worst {max(health) * 1000:.0f} ms"
        )
    if ingest:
        print(
            f"ingest while it rendered: {len(ingest)} POSTs, median {statistics.median(ingest) * 1000:.0f} ms,"
            f" worst {max(ingest) * 1000:.0f} ms, {failures['timeout']} timed out (5 s),"
            f" {failures['error']} failed"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"))
    parser.add_argument("--requests", type=int, default=2, help="attack requests (default 2)")
    parser.add_argument("--names", type=int, default=5000, help="fresh names per request (default 5000)")
    parser.add_argument("--names-cap", type=int, help="set limits.names_per_app_day in the server's config")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest wait for the dashboard")
    opts = parser.parse_args()
    if not (1 <= opts.requests <= 20 and 1 <= opts.names <= 5000 and opts.seconds <= 300):
        parser.error("keep it bounded: requests 1..20, names 1..5000 (one 64 KiB body), seconds <= 300")
    with tempfile.TemporaryDirectory(prefix="tr-abuse-") as tmp:
        workdir = Path(tmp)
        if opts.backend == "sqlite":
            run(f"sqlite:///{workdir / 'abuse.db'}", opts, workdir)
        elif not opts.postgres_url:
            print("postgres skipped: no --postgres-url / TEST_POSTGRES_URL", file=sys.stderr)
        else:
            run(opts.postgres_url, opts, workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
