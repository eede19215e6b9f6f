"""The memory of a daemon counting many distinct names in one day (the per-day name cap at work)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import Row, fresh_dir, in_child, rss_kb, worker

T_MEM_MB = 5.0  # "within a few MB of an idle interpreter"


@in_child("memory")
def w_memory(a: dict[str, Any]) -> dict[str, Any]:
    """A daemon counting 10^6 distinct names in one day."""
    import gc

    os.environ["TELEMETRY_ROLLUP_HOME"] = a["home"]
    import telemetry_rollup as tr

    tr.configure("mem", endpoint=a["url"])
    tr.count("warm")
    gc.collect()
    idle = rss_kb()
    start = time.perf_counter()
    for i in range(a["names"]):
        tr.count(f"name.{i}")
    elapsed = time.perf_counter() - start
    gc.collect()
    after = rss_kb()
    tr.flush()
    from telemetry_rollup._codec import decode_lines

    store = Path(a["home"]) / "mem"
    data = (store / "buffer.jsonl").read_bytes()
    for spill in (store / "spill").glob("*.jsonl") if (store / "spill").is_dir() else []:
        data += spill.read_bytes()
    dec = decode_lines(data)
    rollup = dict(dec.rollup)
    for key, c in dec.local.items():  # the first persist shows the notice: its counts stay local
        rollup[key] = rollup.get(key, 0) + c
    names = {n for (_, n) in rollup if not n.startswith("_")}
    overflow = sum(c for (_, n), c in rollup.items() if n == "_overflow")
    # what the host counted: the names kept plus _overflow (the library's own _run:* facts aside)
    total = sum(c for (_, n), c in rollup.items() if n != "warm" and (n == "_overflow" or not n.startswith("_")))
    return {
        "idle_kb": idle,
        "after_kb": after,
        "names_kept": len(names),
        "overflow": overflow,
        "total": total,
        "ns_per_call": elapsed / a["names"] * 1e9,
    }


@in_child("rss")
def w_rss(a: dict[str, Any]) -> dict[str, Any]:
    return {"kb": rss_kb()}


def bench_memory(ctx: Ctx) -> dict[str, Any]:
    p = ctx.p
    res: dict[str, Any] = worker(
        "memory", {"home": str(fresh_dir("mem")), "url": ctx.ep.url("healthy"), "names": p.mem_names}
    )
    bare = worker("rss", {})
    res["bare_kb"] = bare["kb"]
    res["expected_total"] = p.mem_names
    return res


def rows_memory(mem: dict[str, Any], quick: bool) -> list[Row]:
    grow = (mem["after_kb"] - mem["idle_kb"]) / 1024
    bounded = mem["names_kept"] <= 1000 and mem["total"] == mem["expected_total"]
    return [
        Row.judged(
            "memory",
            bounded and grow <= T_MEM_MB,
            f"(+{grow:.1f} MB)",
            f"memory of a daemon counting {mem['expected_total']:,} distinct names in a day",
            f"+{grow:.1f} MB RSS after counting (idle: {mem['idle_kb'] / 1024:.1f} MB with the library configured); "
            f"{mem['names_kept']} names kept, {mem['overflow']:,} under `_overflow`, totals "
            + ("exact" if mem["total"] == mem["expected_total"] else "WRONG"),
            f"bare interpreter {mem['bare_kb'] / 1024:.1f} MB RSS",
            "≤ 1,000 names per day, RSS within a few MB of idle",
        )
    ]


FIGURE = Figure("memory", 90, bench_memory, rows_memory)
