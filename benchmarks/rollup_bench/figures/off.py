"""``count(name)`` when the user switched telemetry off, next to a bare function call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import Row, fresh_dir, in_child, median, worker

T_OFF_RATIO = 1.5  # count() when off: within 1.5x a bare function call


@in_child("off")
def w_off(a: dict[str, Any]) -> dict[str, Any]:
    """count() when the user switched telemetry off, next to a bare function call."""
    import timeit

    os.environ["BENCH_TELEMETRY"] = "0"
    os.environ["TELEMETRY_ROLLUP_HOME"] = a["home"]
    import telemetry_rollup as tr

    tr.configure("bench", endpoint=a["url"])

    def bare(name: str, n: int = 1) -> None:
        pass

    g = {"count": tr.count, "bare": bare, "k": "build"}
    t_off = timeit.Timer("count(k)", globals=g)
    t_bare = timeit.Timer("bare(k)", globals=g)
    off: list[float] = []
    base: list[float] = []
    for _ in range(a["rounds"]):
        off.append(t_off.timeit(a["n"]) / a["n"] * 1e9)
        base.append(t_bare.timeit(a["n"]) / a["n"] * 1e9)
    made = sorted(p.name for p in Path(a["home"]).rglob("*"))
    return {"off": off, "bare": base, "mode": tr._default.mode, "files": made}


def bench_off(ctx: Ctx) -> dict[str, Any]:
    p, ep = ctx.p, ctx.ep
    home = fresh_dir("off")
    res = worker("off", {"home": str(home), "url": ep.url("healthy"), "n": p.micro_n, "rounds": p.micro_rounds})
    return {
        "off": median(res["off"]),
        "bare": median(res["bare"]),
        "diff": median([o - b for o, b in zip(res["off"], res["bare"])]),
        "ratio": median([o / b for o, b in zip(res["off"], res["bare"])]),
        "mode": res["mode"],
        "files": res["files"],
    }


def rows_off(o: dict[str, Any], quick: bool) -> list[Row]:
    return [
        Row.judged(
            "off",
            o["ratio"] <= T_OFF_RATIO and o["mode"] == "off" and not o["files"],
            f"({o['ratio']:.2f}x)",
            "`count(name)` when mode is off",
            f"{o['off']:.0f} ns/call ({o['ratio']:.2f}x a bare call, +{o['diff']:.0f} ns); no file made"
            if not o["files"]
            else f"{o['off']:.0f} ns/call; FILES MADE: {o['files']}",
            f"bare function call {o['bare']:.0f} ns",
            f"≤ {T_OFF_RATIO}x a bare call",
        )
    ]


FIGURE = Figure("off", 30, bench_off, rows_off)
