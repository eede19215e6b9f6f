"""``import telemetry_rollup`` (and each SDK's import) as whole processes, over a bare interpreter."""

from __future__ import annotations

import subprocess
from typing import Any

from rollup_bench import competitors
from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import PY, Row, base_env, median, skip_note, wall

T_IMPORT_MS = 2.0  # issue 14


def bench_imports(ctx: Ctx) -> dict[str, Any]:
    p = ctx.p
    subjects = {"telemetry_rollup": "telemetry_rollup"}
    if not p.quick:
        subjects.update({c.name: c.module for c in competitors.COMPETITORS if ctx.comps.get(c.name)})
    env = base_env()
    base: list[float] = []
    over: dict[str, list[float]] = {k: [] for k in subjects}
    for _ in range(p.import_rounds):
        b = wall([PY, "-c", "pass"], env, 60) or float("nan")
        base.append(b)
        for name, mod in subjects.items():
            t = wall([PY, "-c", f"import {mod}"], env, 60) or float("nan")
            over[name].append(t - b)
    # Which modules `import telemetry_rollup` loads beyond a bare interpreter.
    r = subprocess.run(
        [
            PY,
            "-c",
            "import sys; a = set(sys.modules); import telemetry_rollup; print(' '.join(sorted(set(sys.modules) - a)))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return {"bare": median(base), "over": {k: median(v) for k, v in over.items()}, "loaded": r.stdout.split()}


def rows_imports(im: dict[str, Any], quick: bool) -> list[Row]:
    ours = im["over"]["telemetry_rollup"]
    comp_txt = [f"bare `python -c pass` {im['bare']:.1f} ms"]
    for c in competitors.COMPETITORS:
        comp_txt.append(
            f"`import {c.module}` +{im['over'][c.name]:.0f} ms" if c.name in im["over"] else skip_note(c.name, quick)
        )
    return [
        Row.judged(
            "import",
            ours <= T_IMPORT_MS,
            f"by {ours - T_IMPORT_MS:.1f} ms",
            "`import telemetry_rollup`",
            f"+{ours:.1f} ms over bare Python",
            "; ".join(comp_txt),
            f"≤ {T_IMPORT_MS:.0f} ms over bare Python",
        )
    ]


FIGURE = Figure("imports", 40, bench_imports, rows_imports)
