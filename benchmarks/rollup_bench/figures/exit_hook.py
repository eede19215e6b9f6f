"""Many processes exiting at once: each exit hook's CPU and wall time, and exact totals afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import PY, Row, base_env, fmt_ms, fresh_dir, median, pct, reap_senders

T_BURST_CPU_P99_MS = 5.0  # all exiting at once: each hook's CPU time, p99
T_HOOK_MAX_S = 2.0

EXIT_PROC = """
import atexit, os, sys, time
marks = {}
atexit.register(lambda: os.write(1, b"%.9f %.9f %.9f %.9f\\n" % (
    marks["before"], time.perf_counter(), marks["cpu"], time.thread_time())))  # runs last
import telemetry_rollup as tr
tr.configure("burst", endpoint=sys.argv[1], app_version="1.0")
for i in range(int(sys.argv[2])):
    tr.count("build")  # the first count registers the library's exit hook
    tr.count("cmd.%d" % (i % 10))
n = atexit._ncallbacks()
atexit.register(lambda: marks.update(before=time.perf_counter(), cpu=time.thread_time()))  # runs first
assert n == 2, n  # ours, then the library's: a mark before the library's hook would time nothing
os.write(1, b"ready\\n")
sys.stdin.read()  # all exit when the runner closes stdin
"""


def bench_exit_hook(ctx: Ctx) -> dict[str, Any]:
    p, ep = ctx.p, ctx.ep
    home = fresh_dir("exit")
    env = base_env(TELEMETRY_ROLLUP_HOME=str(home))
    app = home / "burst"
    app.mkdir(mode=0o700)
    (app / "notice").write_text("0")  # the notice was shown on an earlier run
    procs = []
    for _ in range(p.exit_procs):
        procs.append(
            subprocess.Popen(
                [PY, "-c", EXIT_PROC, ep.url("healthy", "/v1/rollups"), str(p.exit_counts)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
    try:
        for pr in procs:
            assert pr.stdout is not None
            line = pr.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError("an exit-hook process did not start")
        start = time.perf_counter()
        for pr in procs:  # release them all at once
            assert pr.stdin is not None
            pr.stdin.close()
        hooks = []
        cpu = []
        for pr in procs:
            assert pr.stdout is not None
            rest = pr.stdout.read().split()
            pr.wait(30)
            if len(rest) == 4:
                hooks.append((float(rest[1]) - float(rest[0])) * 1000)
                cpu.append((float(rest[3]) - float(rest[2])) * 1000)
        all_done = (time.perf_counter() - start) * 1000
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
    reap_senders(f"TELEMETRY_ROLLUP_HOME={home}", 15)
    # exact totals: everything the hooks wrote, wherever it now is (the buffer, spill files, or,
    # when spill files made a send due, the committed outbox generation a detached sender built)
    from_files: dict[str, int] = {}
    spills = len(list((app / "spill").glob("*.jsonl"))) if (app / "spill").is_dir() else 0
    files = [app / "buffer.jsonl", *sorted((app / "spill").glob("*.jsonl"))]
    current = app / "outbox" / "CURRENT"
    if current.exists():
        gen = app / "outbox" / current.read_text().strip()
        files += [*sorted((gen / "inputs").glob("*.jsonl")), gen / "carry.jsonl"]
        for rep in sorted((gen / "reports").glob("*.json")):
            for n, c in json.loads(rep.read_bytes())["counts"].items():
                from_files[n] = from_files.get(n, 0) + c
    for f in files:
        if not f.exists():
            continue
        for line in f.read_bytes().splitlines():
            obj = json.loads(line)
            from_files[obj["n"]] = from_files.get(obj["n"], 0) + obj["c"]
    expected_build = p.exit_procs * p.exit_counts
    cmd_total = sum(c for n, c in from_files.items() if n.startswith("cmd."))
    exact = from_files.get("build") == expected_build and cmd_total == expected_build
    return {
        "n": len(hooks),
        "procs": p.exit_procs,
        "p50": median(hooks),
        "p99": pct(hooks, 99),
        "max": max(hooks) if hooks else float("nan"),
        "all_done": all_done,
        "cpu_p50": median(cpu),
        "cpu_p99": pct(cpu, 99),
        "exact": exact,
        "build": from_files.get("build"),
        "expected": expected_build,
        "spills": spills,
    }


def rows_exit(e: dict[str, Any], quick: bool) -> list[Row]:
    return [
        Row.judged(
            "exit",
            e["exact"]
            and e["cpu_p99"] <= T_BURST_CPU_P99_MS
            and e["max"] <= T_HOOK_MAX_S * 1000
            and e["n"] == e["procs"],
            f"(CPU p99 {e['cpu_p99']:.1f} ms, wall max {e['max']:.0f} ms)",
            f"exit hook, {e['procs']} processes exiting at once",
            f"CPU time of each hook: p50 {e['cpu_p50']:.1f} ms, p99 {e['cpu_p99']:.1f} ms; wall max "
            f"{e['max']:.0f} ms ({e['n']} hooks timed, {e['spills']} spill files); totals "
            + ("exact" if e["exact"] else f"WRONG {e['build']} != {e['expected']}"),
            f"wall time of each hook: p50 {e['p50']:.1f} ms, p99 {e['p99']:.1f} ms (most of it waiting for a core: "
            f"{e['procs']} interpreters exit on {os.cpu_count()} cores); all {e['procs']} gone "
            f"{fmt_ms(e['all_done'])} after release",
            f"each hook's CPU p99 ≤ {T_BURST_CPU_P99_MS:.0f} ms, every hook within its {T_HOOK_MAX_S:.0f} s bound, "
            "exact totals",
        )
    ]


FIGURE = Figure("exit", 60, bench_exit_hook, rows_exit)
