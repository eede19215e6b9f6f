"""Fleet simulation (not a test): N machines x D days of realistic reports, loaded through the
store's own ingest code in bulk, a sample through the real HTTP server, then the latency of
``report`` and of the dashboard for the app over 30 days, and the database size.

    python benchmarks/fleet.py --machines 100000 --days 30             # SQLite, and PostgreSQL
                                                                       # when TEST_POSTGRES_URL is set
    python benchmarks/fleet.py --machines 300 --days 5 --backend sqlite   # a smoke run (seconds)

The fleet: 10 % of machines report almost daily (p 0.9), 25 % weekly (p 0.3), 65 % now and
then (p 0.05); counter names from 200 with Zipf popularity, 18 a report on average (issue
16 measured 19 count rows per machine-day on the code before the daily figures); app versions
released weekly, adopted with a lag of 0 to 21 days; OS and Python skewed; 5 % of machine-days
sent as two reports. Machine i's reports depend only on (seed, i), so workers split the fleet
by i and any run can be repeated. Every figure is checked: the report's totals per day and
name, and its machines per day, must equal what was sent (else exit 1). PostgreSQL runs in a
schema of its own, dropped at the end. The same script measures older code: it uses the store's
``ingest_many`` when there is one, and ``ingest`` per request otherwise.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from bench_server import running_server

from telemetry_rollup.server.store import Environment, Ingest, ReportRows, open_store

APP = "fleet"
NAMES = [f"cmd.{i}" for i in range(190)] + [f"build:{s}" for s in ("ok", "error", "dur:lt1s", "dur:lt10s")]
NAMES += [f"test:{s}" for s in ("ok", "error", "dur:lt1s", "dur:lt10s", "dur:lt1m", "error:E1")]
CUM = list(__import__("itertools").accumulate(1 / (i + 1) for i in range(len(NAMES))))  # Zipf
OSES, OS_W = ("linux", "darwin", "win32"), (60, 25, 15)
PYTHONS, PY_W = ("3.9", "3.10", "3.11", "3.12", "3.13"), (5, 15, 40, 30, 10)
TOKEN = "fleet-dashboard-token"  # noqa: S105 - the throwaway server's dashboard
CHUNK = 500  # requests per bulk transaction


def today() -> date:
    return datetime.now(timezone.utc).date()


def machine_requests(seed: int, i: int, days: int) -> list[Ingest]:
    """Machine i's requests, one per day it reports (5 % of days in two reports)."""
    rnd = random.Random(seed * 1_000_003 + i)  # noqa: S311 - a reproducible fleet, not a secret
    machine = str(uuid.UUID(int=rnd.getrandbits(128)))
    kind = rnd.random()
    p = 0.9 if kind < 0.1 else 0.3 if kind < 0.35 else 0.05
    os_, python = rnd.choices(OSES, OS_W)[0], rnd.choices(PYTHONS, PY_W)[0]
    lag = rnd.randint(0, 21)
    first = today() - timedelta(days=days)
    out = []
    for d in range(days):
        if rnd.random() >= p:
            continue
        version = f"2.{max(0, (d - lag) // 7 + 10)}"
        k = 1 + min(int(rnd.expovariate(1 / 30)), 90)  # draws; ~18 distinct names a report
        counts = {NAMES[bisect.bisect(CUM, rnd.random() * CUM[-1])]: 1 + int(rnd.expovariate(0.2)) for _ in range(k)}
        day = (first + timedelta(days=d)).isoformat()
        parts = [counts]
        if rnd.random() < 0.05 and len(counts) > 1:  # the day sent in two reports
            items = list(counts.items())
            parts = [dict(items[: len(items) // 2]), dict(items[len(items) // 2 :])]
        reports = [ReportRows(str(uuid.UUID(int=rnd.getrandbits(128))), day, c) for c in parts]
        out.append(Ingest(APP, machine, Environment(version, "0.9.0", os_, "x86_64", python, False), reports))
    return out


def load(args: tuple[str, int, int, int, int, int]) -> dict[str, Any]:
    """A worker: machines i with i % workers == worker, through the store's ingest code."""
    url, seed, machines, days, worker, workers = args
    store = open_store(url)
    totals: Counter[tuple[str, str]] = Counter()
    per_day: Counter[str] = Counter()
    reports = requests_ = names = 0
    bulk = getattr(store, "ingest_many", None)
    pending: list[Ingest] = []
    started = time.perf_counter()

    def flush() -> None:
        if bulk is not None:
            results = bulk(pending, time.time())
            assert all(r is not None and r.duplicates == 0 for r in results), results
        else:
            for one in pending:
                store.ingest(one, time.time())
        pending.clear()

    for i in range(worker, machines, workers):
        for req in machine_requests(seed, i, days):
            requests_ += 1
            per_day[req.reports[0].day] += 1
            for r in req.reports:
                reports += 1
                names += len(r.counts)
                totals.update({(r.day, n): v for n, v in r.counts.items()})
            pending.append(req)
            if len(pending) >= CHUNK:
                flush()
    flush()
    elapsed = time.perf_counter() - started
    store.close()
    return {
        "totals": dict(totals), "per_day": dict(per_day), "reports": reports, "requests": requests_,
        "names": names, "s": elapsed,
    }  # fmt: skip


def http_sample(url: str, base: str, n: int, totals: Counter[tuple[str, str]], per_day: Counter[str]) -> float:
    """``n`` requests of new machines (wire format 2) through the real server; requests/s."""
    from telemetry_rollup._identity import derive_id

    day = (today() - timedelta(days=1)).isoformat()
    session = requests.Session()
    bodies = []
    for _ in range(n):
        key = os.urandom(32).hex()
        counts = {NAMES[i]: 1 for i in random.sample(range(20), 5)}
        totals.update({(day, k): v for k, v in counts.items()})
        per_day[day] += 1
        report = {"id": str(uuid.uuid4()), "day": day, "counts": counts}
        bodies.append({"schema": 2, "app": APP, "app_version": "2.99", "lib_version": "0.9.0",
                       "machine_id": derive_id(key), "machine_key": key, "os": "linux", "arch": "x86_64",
                       "python": "3.12", "ci": False, "reports": [report]})  # fmt: skip
    started = time.perf_counter()
    for body in bodies:
        resp = session.post(base + "/v1/rollups", json=body, timeout=30)
        assert resp.status_code == 200 and resp.json()["stored"] == 1, resp.text
    return n / (time.perf_counter() - started)


def timed(fn: Any, rounds: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def db_size(url: str, path: Path | None) -> int:
    if path is not None:
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"VACUUM ANALYZE {table}")
        row = conn.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row and row[0] else 0


def run(backend: str, url: str, path: Path | None, opts: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    open_store(url).close()  # create or migrate once, before the workers start
    ctx = multiprocessing.get_context("spawn")
    jobs = [(url, opts.seed, opts.machines, opts.days, w, opts.workers) for w in range(opts.workers)]
    started = time.perf_counter()
    with ctx.Pool(opts.workers) as pool:
        parts = pool.map(load, jobs)
    wall = time.perf_counter() - started
    totals: Counter[tuple[str, str]] = Counter()
    per_day: Counter[str] = Counter()
    for part in parts:
        totals.update(part["totals"])
        per_day.update(part["per_day"])
    reports = sum(p["reports"] for p in parts)
    limits = {"per_machine": 10**9, "per_address": 10**9}
    config = {"limits": limits, "dashboard": {"token": TOKEN}}
    with running_server(url, config, workdir, name=f"fleet-{backend}", start_timeout=60, stop_timeout=60) as (base, _):
        http_rate = http_sample(url, base, opts.http, totals, per_day)
        cmd = [sys.executable, "-m", "telemetry_rollup", "report", "--db", url, "--app", APP, "--days", "30"]
        report_s, out = timed(lambda: subprocess.run([*cmd, "--format", "json"], capture_output=True, check=True))
        dash_params = {"app": APP, "days": "30", "token": TOKEN}
        dash_s, page = timed(lambda: requests.get(base + "/dashboard", params=dash_params, timeout=3600))
        assert page.status_code == 200, page.status_code
    check(json.loads(out.stdout), totals, per_day, opts.days)
    machine_days = sum(per_day.values())  # the HTTP sample's included
    size = db_size(url, path)
    return {
        "backend": backend, "machines": opts.machines, "days": opts.days, "machine_days": machine_days,
        "reports": reports, "counters": sum(p["names"] for p in parts), "workers": opts.workers,
        "load_s": round(wall, 1),
        "reports_per_s_per_worker": round(statistics.mean(p["reports"] / p["s"] for p in parts)),
        "http_req_per_s": round(http_rate), "size_mb": round(size / 1e6, 1),
        "bytes_per_machine_day": round(size / max(1, machine_days)), "report_s": round(report_s, 2),
        "dashboard_s": round(dash_s, 2), "dashboard_kb": round(len(page.content) / 1000),
    }  # fmt: skip


def check(data: dict[str, Any], totals: Counter[tuple[str, str]], per_day: Counter[str], days: int) -> None:
    """The report's figures for the last 30 days must equal what was sent (exit 1 if not)."""
    since = (today() - timedelta(days=29)).isoformat()
    want = {k: v for k, v in totals.items() if k[0] >= since}
    got = {(r["day"], r["name"]): r["total"] for r in data["counts"]}
    want_machines = {d: n for d, n in per_day.items() if d >= since}
    # Distinct machines per day: every machine-day was sent by one request (bulk) or one machine (HTTP).
    got_machines: dict[str, int] = {}
    for r in data["machines"]["os"]:  # one OS per machine: their sum per day is the machines
        if "day" in r:  # older code counted machines over the whole range, not per day
            got_machines[r["day"]] = got_machines.get(r["day"], 0) + r["machines"]
    if got != want or (got_machines and got_machines != want_machines):
        print("CHECK FAILED: the report's totals or machines differ from what was sent", file=sys.stderr)
        raise SystemExit(1)


def row(r: dict[str, Any]) -> str:
    return (
        f"| {r['backend']} | {r['machines']:,} x {r['days']} | {r['machine_days']:,}"
        f" | {r['reports_per_s_per_worker']:,} ({r['workers']}) | {r['http_req_per_s']}"
        f" | {r['size_mb']:,} MB | {r['bytes_per_machine_day']} B"
        f" | {r['report_s']} s | {r['dashboard_s']} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"))
    parser.add_argument("--workers", type=int, default=1, help="loading processes")
    parser.add_argument("--http", type=int, default=200, help="requests sent through the real server")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--dir", type=Path, help="keep the SQLite file here (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print each result as JSON too")
    opts = parser.parse_args()
    if not (1 <= opts.machines <= 10**7 and 1 <= opts.days <= 35 and 1 <= opts.workers <= 16):
        parser.error("machines 1..10^7, days 1..35 (the HTTP sample is sent for yesterday), workers 1..16")
    print("| backend | machines x days | machine-days | reports/s per worker (workers) | HTTP req/s | size |"
          " per machine-day | `report` | dashboard |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tr-fleet-", dir=opts.dir) as tmp:
        workdir = Path(tmp)
        results = []
        if opts.backend in ("sqlite", "both"):
            path = workdir / "fleet.db"
            results.append(run("SQLite", f"sqlite:///{path}", path, opts, workdir))
            print(row(results[-1]), flush=True)
        if opts.backend in ("postgres", "both"):
            if not opts.postgres_url:
                print("postgres skipped: no --postgres-url / TEST_POSTGRES_URL", file=sys.stderr)
            else:
                results.append(run_postgres(opts, workdir))
                print(row(results[-1]), flush=True)
        if opts.json:
            for r in results:
                print(json.dumps(r))
    return 0


def run_postgres(opts: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import psycopg

    url = opts.postgres_url
    schema = f"fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        return run("PostgreSQL", f"{url}{sep}options={quote(f'-c search_path={schema}')}", None, opts, workdir)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    raise SystemExit(main())
