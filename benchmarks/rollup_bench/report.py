"""The report: the machine it ran on, the table from every figure's rows, the figures' own sections,
and the notes on how each figure is taken and where a target is missed."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
from typing import Any

from rollup_bench.figures import Figure
from rollup_bench.harness import Row

COLUMNS = ["figure", "telemetry_rollup", "compared with (same run)", "target", "result"]


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model or platform.processor() or platform.machine(),
        "python": platform.python_version() + " (" + platform.python_implementation() + ")",
        "os": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": load,
    }


def build_table(figures: list[Figure], r: dict[str, Any], quick: bool) -> tuple[list[Row], list[str]]:
    """Every figure's rows, in order, and the short names of the targets missed."""
    rows = [row for f in figures for row in f.rows(r[f.key], quick)]
    return rows, [row.missed for row in rows if row.missed]


def render(
    figures: list[Figure], rows: list[Row], mach: dict[str, str], r: dict[str, Any], quick: bool, seconds: float
) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |")
    table = "\n".join(lines)
    m = mach
    sections: list[str] = []
    for f in figures:
        if f.section is not None:
            sections += [f.section(r[f.key]), ""]
    return (
        "\n".join(
            [
                "# Benchmarks",
                "",
                "Produced by `python benchmarks/run.py`"
                + (" --quick (a smoke run: too few rounds to mean anything)" if quick else "")
                + f" in {seconds:.0f} s. Install the competitors with "
                "`pip install -e '.[bench]'`.",
                "",
                f"Machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['os']}; run {m['date']}; "
                f"load average at the start {m['load']}.",
                "",
                "The machine was shared with other work while this ran (2 cores, other jobs compiling and "
                "testing), so absolute times are noisy. Every figure is a median over repeated rounds, each in a "
                "fresh interpreter, and every ratio or overhead is taken within one round (ours and the baseline "
                "back to back) before the median is taken. Compare the ratios, not the absolute numbers, across "
                "machines.",
                "",
                table,
                "",
                *sections,
                NOTES,
            ]
        )
        + "\n"
    )


NOTES = """## How each figure is taken

- **count()**: `timeit` in one process, round-robin over the subjects (bare dict increment, the same under a
  `threading.Lock`, `count()`, then each SDK's call) for 11 rounds; the ratio is `count()` over the bare dict in
  the same round. The SDKs get fewer calls per round (they cost microseconds).
- **count() when off**: the same against a bare function call taking the same arguments.
- **4 threads**: the same name counted from 4 threads released by a barrier, against one thread in the same
  round; totals are checked after every round (nothing lost, nothing counted twice). With the GIL, 4 threads
  cannot beat one; the target is that contention does not make them slower.
- **import / whole CLI run / flush**: wall time of a child process, minus `python -c pass` timed just before
  it in the same round; median over the rounds. The whole CLI run uses the default data location (a
  sandboxed `HOME`) where the tool ran before (notice shown, config written): with yesterday's counts
  buffered (reports due: the exit hook starts the detached sender, which runs after the measured process
  has gone), or with only today's (nothing due, the common run).
- **configure()**: `time.perf_counter()` around the first `configure()` call in a fresh interpreter (its
  lazy imports included), at that default data location; median over 21 interpreters.
- **exit hook CPU, reports due**: a fresh interpreter counts 20 times where reports are due; `time.thread_time()`
  marks registered around the library's exit hook (atexit runs last-in first-out) give its CPU time, which
  includes starting the detached sender (checked in every run); median over 21 runs.
- **exit hook, 100 at once**: 100 processes import, configure, count 2,000 times, then block on stdin; closing
  their stdin releases all at once. Each process measures its own exit hook (CPU with `time.thread_time()`,
  wall with `time.perf_counter()`). Totals are summed from the buffer, spill files and whatever a detached
  sender moved into the outbox.
- **collapse**: `append()` onto a buffer filled to the 256 KiB cap, which compacts it in place (the exit
  hook's worst case), on a fresh copy each round.
- **memory**: RSS (`VmRSS`) after counting `name.0` ... `name.999999` once each, against RSS just before.

## Where a target is missed, and why

Profiled with `-X importtime` and cProfile on the same machine (figures in ms on this loaded machine; an idle
one is faster, the ratios hold).

- **`import telemetry_rollup`** (about +1-2 ms over the 3 ms target). What is left is `threading` (it loads
  `collections` and `functools`, ~2.5 ms) and `weakref` (~0.5 ms). `typing`, `logging`, `re`, `datetime` and
  `pathlib` no longer load at import (they cost ~20 ms together). `threading` could be deferred too (the counters'
  lock from `_thread`, the flusher's Event created lazily), but the first count of a new name starts the flush
  thread and loads it anyway, so no whole run would get faster; not done.
- **`count()` from 4 threads** (0.8-1.0x one thread across runs, totals always exact). With the GIL only one
  thread runs Python at a time, so 4 threads can at best match one; what is left is the cost of switching
  between them, which a lock-free `next()` on a shared counter does not add to but cannot remove.
- **Whole CLI run** (about +15-25 ms over the 20 ms target, the same in all three endpoint states, because the
  process never touches the network). Measured inside the process: import ~4 ms; `configure()` ~9 ms, of which
  ~7 ms is importing `pathlib` (it loads `urllib.parse`, `ipaddress`, `fnmatch` and `re`), which the store layer
  (`_paths`, `_fs`, `_store`) is written in; the exit hook ~5 ms with reports due: the due check reads a few small files
  (`_due`, which loads neither the sender nor its transport), starting the detached sender imports `subprocess`
  (~2 ms) and forks and execs (~2 ms). The next step would be a store layer on `os.path` strings instead of `pathlib`
  (~7 ms), a restructure left for a separate change since other work is editing those modules now. For scale:
  the other SDKs add 0.2 s (healthy) to 15.7 s (never answering). The host process does the same work in all
  three states (only the detached sender touches the network); the spread between the columns is the shared
  machine and the detached sender starting on the other core while the next rounds run.
- **Exit hook, 100 processes at once** (p99 far over 50 ms; every hook well under its 2 s bound, totals exact, no
  spill). Each hook's own CPU time is ~4-7 ms; the wall time is 100 interpreters tearing down on 2 cores at the
  same moment, so most hooks wait for a core. No change to the hook can make 100 x (hook + interpreter exit) of
  CPU fit in 50 ms on 2 cores; on this machine class the target is unreachable by construction.
- **Collapse of a full buffer** (10-18 ms across runs on this shared machine, against a 10 ms target).
  ~5,900 lines, each parsed by `orjson.loads`, validated (name and day) and merged, then rewritten in place:
  ~1.7 µs per line.
"""
