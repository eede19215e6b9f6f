"""The runner: ``python benchmarks/run.py [--quick] [--out FILE] [--json FILE]``, and ``--worker NAME``
in the children it starts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rollup_bench import competitors, report
from rollup_bench.endpoints import Endpoints
from rollup_bench.figures import Ctx, all_figures
from rollup_bench.harness import DOC, WORKERS, Params, sandbox


def main(argv: list[str] | None = None, description: str = "") -> int:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="smoke run: checks every benchmark works, in seconds")
    ap.add_argument("--out", help="write the report here (default: docs/benchmarks.md; none with --quick)")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    figures = all_figures()  # also fills WORKERS
    if ns.worker:
        print(json.dumps(WORKERS[ns.worker](json.loads(ns.args or "{}"))))
        return 0
    p = Params(ns.quick)
    results: dict[str, Any] = {}
    with sandbox():
        started = time.monotonic()
        mach = report.machine()
        comps = competitors.installed(ns.quick)
        with Endpoints() as ep:
            ctx = Ctx(p, ep, comps)
            for f in figures:
                t0 = time.monotonic()
                results[f.key] = f.bench(ctx)
                print(f"[{f.key}: {time.monotonic() - t0:.1f} s]", file=sys.stderr, flush=True)
    rows, misses = report.build_table(figures, results, ns.quick)
    doc = report.render(figures, rows, mach, results, ns.quick, time.monotonic() - started)
    print(doc)
    out = ns.out or (None if ns.quick else str(DOC))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(doc)
    if ns.json:
        Path(ns.json).write_text(json.dumps({"machine": mach, "results": results}, indent=1))
    if misses:
        print("targets missed: " + ", ".join(misses), file=sys.stderr)
    return 0
