"""``count(name)`` of one name from 4 threads at once, against one thread: throughput and exact totals."""

from __future__ import annotations

import time
from typing import Any

from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import Row, fresh_dir, in_child, median, worker


@in_child("threads")
def w_threads(a: dict[str, Any]) -> dict[str, Any]:
    """count() from 1 thread and from 4 threads at once: throughput and exact totals."""
    import threading

    import telemetry_rollup as tr

    tel = tr.Telemetry("threads", home=a["home"], flush_interval=0)
    count = tel.count
    n = a["n"]

    def work(name: str) -> None:
        for _ in range(n):
            count(name)

    one: list[float] = []
    four: list[float] = []
    exact = True
    totals: list[int] = []
    work("build")  # warm-up (first call takes the slow path)
    tel._counters.take()
    for _ in range(a["rounds"]):
        start = time.perf_counter()
        work("build")
        one.append(n / (time.perf_counter() - start))
        got = sum(c for (_, name), c in tel._counters.take().items() if name == "build")
        exact = exact and got == n
        barrier = threading.Barrier(5)

        def run(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            work("build")

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        four.append(4 * n / (time.perf_counter() - start))
        got = sum(c for (_, name), c in tel._counters.take().items() if name == "build")
        totals.append(got)
        exact = exact and got == 4 * n
    return {"one": one, "four": four, "exact": exact, "totals": totals, "expected": 4 * n}


def bench_threads(ctx: Ctx) -> dict[str, Any]:
    p = ctx.p
    res = worker("threads", {"home": str(fresh_dir("threads")), "n": p.thread_n, "rounds": p.thread_rounds})
    ratios = [f / o for f, o in zip(res["four"], res["one"])]
    return {
        "one": median(res["one"]),
        "four": median(res["four"]),
        "ratio": median(ratios),
        "exact": res["exact"],
        "totals": res["totals"],
        "expected": res["expected"],
    }


def rows_threads(t: dict[str, Any], quick: bool) -> list[Row]:
    return [
        Row.judged(
            "threads",
            t["exact"] and t["ratio"] >= 1.0,
            f"({t['ratio']:.2f}x one thread)" if t["exact"] else "(totals not exact)",
            "`count(name)`, 4 threads at once (same name)",
            f"{t['four'] / 1e6:.1f} M calls/s total ({t['ratio']:.2f}x one thread); totals "
            + ("exact" if t["exact"] else f"WRONG {t['totals']} != {t['expected']}"),
            f"one thread {t['one'] / 1e6:.1f} M calls/s",
            "exact totals; throughput ≥ one thread",
        )
    ]


FIGURE = Figure("threads", 20, bench_threads, rows_threads)
