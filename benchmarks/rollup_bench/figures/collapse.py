"""The exit hook's compaction: a full 256 KiB buffer collapsed into one line per day and name."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import Row, fresh_dir, in_child, median, worker

T_COLLAPSE_MS = 10.0


@in_child("collapse")
def w_collapse(a: dict[str, Any]) -> dict[str, Any]:
    """The exit hook's compaction: a full 256 KiB buffer collapsed into one line per day and name."""
    from telemetry_rollup import _store
    from telemetry_rollup._codec import decode_lines
    from telemetry_rollup._days import today_iso
    from telemetry_rollup._line import BUFFER_CAP

    today_s = today_iso(time.time())
    today = _dt.date.fromisoformat(today_s)
    store = _store.AppStore(Path(a["home"]) / "collapse")
    store.ensure()
    out: dict[str, Any] = {}
    for kind in ("repeats", "distinct"):
        # repeats: what many short runs append (7 days x 300 names, each pair on many lines);
        # distinct: every line a different name, so the cap must drop the oldest days.
        lines = []
        size = 0
        i = 0
        while True:
            day = (
                (today - _dt.timedelta(days=6 - (i * 7) // 6000)).isoformat()
                if kind == "distinct"
                else (today - _dt.timedelta(days=i % 7)).isoformat()
            )
            name = f"cmd.{i % 300}" if kind == "repeats" else f"cmd.n{i}"
            line = b'{"v":1,"d":"%s","n":"%s","c":%d}\n' % (day.encode(), name.encode(), 1 + i % 5)
            if size + len(line) > BUFFER_CAP:
                break
            lines.append(line)
            size += len(line)
            i += 1
        data = b"".join(lines)
        before = sum(decode_lines(data).rollup.values())
        times = []
        result = ""
        ok = True
        after_lines = 0
        for _ in range(a["rounds"]):
            Path(store.buffer).write_bytes(data)
            start = time.perf_counter()
            result = _store.append(store, {(today_s, "build.after.the.buffer.filled"): 1}, today=today_s, timeout=1.0)
            times.append((time.perf_counter() - start) * 1000)
            dec = decode_lines(Path(store.buffer).read_bytes())
            after_lines = len(dec.rollup)
            total = sum(dec.rollup.values())
            ok = (
                ok and result == "compacted" and total == before + 1 and Path(store.buffer).stat().st_size <= BUFFER_CAP
            )
        out[kind] = {
            "ms": times,
            "lines_before": len(lines),
            "bytes_before": size,
            "lines_after": after_lines,
            "result": result,
            "ok": ok,
        }
    return out


def bench_collapse(ctx: Ctx) -> dict[str, Any]:
    res: dict[str, Any] = worker("collapse", {"home": str(fresh_dir("collapse")), "rounds": ctx.p.collapse_rounds})
    for v in res.values():
        v["median"] = median(v.pop("ms"))
    return res


def rows_collapse(c: dict[str, Any], quick: bool) -> list[Row]:
    rep, dis = c["repeats"], c["distinct"]
    return [
        Row.judged(
            "collapse",
            rep["median"] <= T_COLLAPSE_MS and rep["ok"],
            f"by {rep['median'] - T_COLLAPSE_MS:.1f} ms",
            "collapse a full 256 KiB buffer into rollups (the exit hook's compaction)",
            f"{rep['median']:.1f} ms ({rep['lines_before']} lines -> {rep['lines_after']}, totals kept)"
            if rep["ok"]
            else f"{rep['median']:.1f} ms (CHECK FAILED)",
            f"worst case, every line distinct ({dis['lines_before']} lines, oldest days dropped to fit): "
            f"{dis['median']:.1f} ms",
            f"≤ {T_COLLAPSE_MS:.0f} ms",
        )
    ]


FIGURE = Figure("collapse", 70, bench_collapse, rows_collapse)
