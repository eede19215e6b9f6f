"""Load check for the ingest server (not a test): requests/s and p50/p99 latency.

Starts the real server (``python -m telemetry_rollup.server``) on a free 127.0.0.1 port for
each backend, then drives it from separate client processes, each sending rollups one after
another over a keep-alive connection. Bounded in count and time: at most ``--requests`` per
backend and at most ``--seconds`` each; the server is stopped afterwards.

    python benchmarks/server_load.py                       # SQLite; PostgreSQL too if
                                                           # TEST_POSTGRES_URL is set
    python benchmarks/server_load.py --clients 16 --requests 5000 --workers 2
    python benchmarks/server_load.py --backend postgres --postgres-url postgresql://...

Every request carries one new report of 10 counters (so every request writes), except
with ``--duplicates``, which resends one fixed body (the dedup path: a read and no write).
Each client is one machine sending report after report for the same day (the server's most
expensive case: every report after the first adds to a stored machine-day), unless
``--machines N``: each client then sends as N machines in turn, so most requests are a
machine's first report of the day, as in a fleet.
Bodies are wire format 2 (the machine's key as proof, as the library sends) unless
``--wire 1`` (older clients: a random machine id, no proof). ``--metrics`` turns ``GET /metrics``
on (the counting it adds to every request; with ``--workers N`` prometheus-client's multiprocess
files) and checks at the end that it counted every request.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
from bench_server import running_server


def _body(app: str, machine: str, report_id: str, key: str | None) -> dict[str, Any]:
    day = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    body: dict[str, Any] = {
        "schema": 1,
        "app": app,
        "app_version": "1.4.0",
        "lib_version": "0.1.0",
        "machine_id": machine,
        "os": "linux",
        "arch": "x86_64",
        "python": "3.11",
        "ci": False,
        "reports": [{"id": report_id, "day": day, "counts": {f"cmd.{i}": i for i in range(10)}}],
    }
    if key is not None:
        body.update(schema=2, machine_key=key)
    return body


def _client(args: tuple[str, int, float, bool, str, int, int]) -> tuple[list[float], int]:
    url, count, deadline, duplicates, app, wire, machines = args
    session = requests.Session()
    identities: list[tuple[str, str | None]] = []
    for _ in range(machines):
        if wire == 2:
            from telemetry_rollup._identity import derive_id

            key = os.urandom(32).hex()
            identities.append((derive_id(key), key))
        else:
            identities.append((str(uuid.uuid4()), None))
    fixed = json.dumps(_body(app, identities[0][0], str(uuid.uuid4()), identities[0][1]))
    latencies: list[float] = []
    errors = 0
    for i in range(count):
        if time.time() >= deadline:
            break
        machine, key = identities[i % machines]
        data = fixed if duplicates else json.dumps(_body(app, machine, str(uuid.uuid4()), key))
        start = time.perf_counter()
        try:
            resp = session.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=10)
            ok = resp.status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.perf_counter() - start)
        errors += not ok
    session.close()
    return latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc), in seconds: a figure
    that other load on the machine does not inflate, unlike wall-clock throughput."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


METRICS_TOKEN = "bench-metrics-token"  # noqa: S105 - a throwaway server's, on 127.0.0.1


def _check_metrics(base: str, sent: int, errors: int) -> None:
    """/metrics counted every request the clients saw answered (a benchmark of a broken
    counter would measure nothing); a failed request may or may not have reached it."""
    text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("telemetry_rollup_request_duration_seconds_count"))
    counted = float(line.rsplit(" ", 1)[1])
    if not sent - errors <= counted <= sent:
        raise SystemExit(f"/metrics counted {counted:.0f} requests; the clients sent {sent}, {errors} failed")


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run_backend(name: str, db_url: str, opts: argparse.Namespace, workdir: Path) -> None:
    limits = {"per_machine": 10**9, "per_address": 10**9}
    settings: dict[str, Any] = {"limits": limits}
    if opts.metrics:
        settings["metrics"] = {"token": METRICS_TOKEN}
    args = ("--workers", str(opts.workers))
    with running_server(db_url, settings, workdir, name=f"server-{name}", args=args) as (base, server):
        per_client = max(1, opts.requests // opts.clients)
        stop_at = time.time() + opts.seconds
        app = f"bench-{uuid.uuid4().hex[:8]}"
        jobs = [
            (base + "/v1/rollups", per_client, stop_at, opts.duplicates, app, opts.wire, opts.machines)
            for _ in range(opts.clients)
        ]
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(opts.clients) as pool:
            results = pool.map(_client, jobs)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(server.pid) - cpu_before
        if opts.metrics:
            _check_metrics(base, sum(len(lat) for lat, _ in results), sum(e for _, e in results))
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    p50, p99 = (_percentile(latencies, p) * 1000 for p in (50, 99))
    print(
        f"{name:<10} wire={opts.wire} workers={opts.workers} metrics={'on' if opts.metrics else 'off'}"
        f" clients={opts.clients} machines={opts.machines} "
        f"requests={len(latencies)} errors={errors} time={elapsed:.1f}s "
        f"rate={len(latencies) / elapsed:.0f} req/s p50={p50:.1f} ms p99={p99:.1f} ms"
        f" server_cpu={cpu / max(1, len(latencies)) * 1000:.2f} ms/req"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per backend (upper bound)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per backend (upper bound)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duplicates", action="store_true", help="resend one body")
    parser.add_argument("--wire", type=int, choices=(1, 2), default=2, help="wire format of the bodies (default 2)")
    parser.add_argument("--machines", type=int, default=1, help="machines per client, taking turns (default 1)")
    parser.add_argument("--metrics", action="store_true", help="with GET /metrics on (a [metrics] section)")
    opts = parser.parse_args()
    if not (1 <= opts.clients <= 64 and 1 <= opts.requests <= 100_000 and opts.seconds <= 300):
        parser.error("keep the load bounded: clients 1..64, requests <= 100000, seconds <= 300")
    if not 1 <= opts.machines <= 10_000:
        parser.error("--machines must be 1..10000")
    with tempfile.TemporaryDirectory(prefix="tr-bench-") as tmp:
        workdir = Path(tmp)
        if opts.backend in ("sqlite", "both"):
            run_backend("sqlite", f"sqlite:///{workdir / 'bench.db'}", opts, workdir)
        if opts.backend in ("postgres", "both"):
            if not opts.postgres_url:
                print("postgres   skipped: no --postgres-url / TEST_POSTGRES_URL", file=sys.stderr)
            else:
                run_backend("postgres", opts.postgres_url, opts, workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
