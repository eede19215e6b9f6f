"""``count(name)`` and ``with timed(name):`` in a hot loop, next to a bare dict and the SDKs' calls."""

from __future__ import annotations

import os
from typing import Any

from rollup_bench import competitors
from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import Row, fresh_dir, in_child, median, skip_note, worker

T_COUNT_RATIO = 2.5  # count() stays within 2.5x a bare dict increment
T_TIMED_RATIO = 10.0  # issue 7: "within a few times count()"


@in_child("micro")
def w_micro(a: dict[str, Any]) -> dict[str, Any]:
    """ns per call of count() and its alternatives, round-robin in one process."""
    import threading
    import timeit

    os.environ["TELEMETRY_ROLLUP_HOME"] = a["home"]
    import telemetry_rollup as tr

    tr.configure("bench", endpoint=a["url"], app_version="1.0")
    k = "build"
    g: dict[str, Any] = {"d": {k: 0}, "k": k, "lock": threading.Lock(), "count": tr.count, "timed": tr.timed}
    subjects = {
        "dict": ("d[k] += 1", a["n"]),
        "lock": ("with lock:\n    d[k] += 1", a["n"]),
        "count": ("count(k)", a["n"]),
        "timed": ("with timed(k):\n    pass", a["n"] // 4),
    }
    notes: dict[str, str] = {}
    for c in competitors.with_micro():
        if c.name in a["competitors"] and c.micro is not None:
            c.micro.setup(g, a)
            subjects[c.name] = (c.micro.stmt, a["slow_n"])
            notes[c.name] = c.micro.note
    timers = {name: (timeit.Timer(stmt, globals=g), n) for name, (stmt, n) in subjects.items()}
    for t, n in timers.values():  # warm up: first-time paths (new name, lazy imports) are not the hot path
        t.timeit(max(1, n // 10))
    out: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(a["rounds"]):
        for name, (t, n) in timers.items():
            out[name].append(t.timeit(n) / n * 1e9)
    tr._default._counters.take()
    return {"ns": out, "notes": notes}


def bench_micro(ctx: Ctx) -> dict[str, Any]:
    p, ep = ctx.p, ctx.ep
    want = [c.name for c in competitors.with_micro() if ctx.comps.get(c.name) and not p.quick]
    res = worker(
        "micro",
        {
            "home": str(fresh_dir("micro")),
            "url": ep.url("healthy", "/v1/rollups"),
            "n": p.micro_n,
            "slow_n": p.micro_slow_n,
            "rounds": p.micro_rounds,
            "competitors": want,
        },
    )
    ns = res["ns"]
    ratio = [c / d for c, d in zip(ns["count"], ns["dict"])]
    return {"ns": {k: median(v) for k, v in ns.items()}, "ratio": median(ratio), "notes": res["notes"]}


def rows_micro(m: dict[str, Any], quick: bool) -> list[Row]:
    ns = m["ns"]
    comp_txt = [f"bare `d[k] += 1` {ns['dict']:.0f} ns", f"dict under `threading.Lock` {ns['lock']:.0f} ns"]
    for c in competitors.with_micro():
        comp_txt.append(f"{c.name} {ns[c.name] / 1000:.1f} µs" if c.name in ns else skip_note(c.name, quick))
    count = Row.judged(
        "count",
        m["ratio"] <= T_COUNT_RATIO,
        f"({m['ratio']:.2f}x)",
        "`count(name)`, one thread, mode on",
        f"{ns['count']:.0f} ns/call ({m['ratio']:.2f}x bare dict)",
        "; ".join(comp_txt),
        f"≤ {T_COUNT_RATIO}x bare dict",
    )
    # timed(): name, name:ok and a duration bucket, plus two clock reads, around an empty block
    timed_ratio = ns["timed"] / ns["count"]
    timed = Row.judged(
        "timed",
        timed_ratio <= T_TIMED_RATIO,
        f"({timed_ratio:.1f}x)",
        "`with timed(name):` around an empty block",
        f"{ns['timed']:.0f} ns/call ({timed_ratio:.1f}x `count()`)",
        f"`count(name)` {ns['count']:.0f} ns in the same round; it counts 3 names and reads the clock twice",
        f"within a few times `count()` (≤ {T_TIMED_RATIO:.0f}x)",
    )
    return [count, timed]


FIGURE = Figure("micro", 10, bench_micro, rows_micro)
