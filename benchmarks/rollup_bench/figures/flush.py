"""``python -m telemetry_rollup flush`` as whole processes: ``--if-due`` with nothing due, and explicit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from rollup_bench.endpoints import Endpoints
from rollup_bench.figures import Ctx, Figure
from rollup_bench.figures.cli import OURS_CLI
from rollup_bench.harness import PY, Row, base_env, fresh_dir, median, wall

T_FLUSH_MS = 40.0


def _seed_flush_home(ep: Endpoints) -> Path:
    home = fresh_dir("flush")
    env = base_env(TELEMETRY_ROLLUP_HOME=str(home))
    subprocess.run(
        [PY, "-c", OURS_CLI.replace("benchcli", "benchflush"), ep.url("healthy", "/v1/rollups")],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    return home


def bench_flush(ctx: Ctx) -> dict[str, Any]:
    p, ep = ctx.p, ctx.ep
    home = _seed_flush_home(ep)
    env = base_env(TELEMETRY_ROLLUP_HOME=str(home))
    cmds = {
        "if_due": [PY, "-m", "telemetry_rollup", "flush", "--app", "benchflush", "--if-due", "--quiet"],
        "explicit": [PY, "-m", "telemetry_rollup", "flush", "--app", "benchflush", "--quiet"],
    }
    over: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(p.flush_rounds):
        b = wall([PY, "-c", "pass"], env, 60) or float("nan")
        for k, cmd in cmds.items():
            t = wall(cmd, env, 60) or float("nan")
            over[k].append(t - b)
    loaded = {}
    for k, cmd in cmds.items():
        r = subprocess.run(
            [cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        mods = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
        loaded[k] = sorted(
            m for m in mods if m.split(".")[0] in ("requests", "urllib3", "filelock", "orjson", "platformdirs")
        )
    return {"over": {k: median(v) for k, v in over.items()}, "loaded": loaded, "posts": ep.posts("/v1/rollups")}


def rows_flush(f: dict[str, Any], quick: bool) -> list[Row]:
    ours = f["over"]["if_due"]
    loaded = ", ".join(f["loaded"]["if_due"]) or "none of requests/urllib3/filelock/orjson/platformdirs"
    return [
        Row.judged(
            "flush",
            ours <= T_FLUSH_MS and not any(m.startswith(("requests", "urllib3")) for m in f["loaded"]["if_due"]),
            f"by {ours - T_FLUSH_MS:.1f} ms",
            "`python -m telemetry_rollup flush --if-due` when nothing is due",
            f"+{ours:.1f} ms over bare Python; loads {loaded}",
            f"explicit `flush` (recover, claim, roll up, nothing to send) +{f['over']['explicit']:.1f} ms; loads "
            + (", ".join(f["loaded"]["explicit"]) or "none of those"),
            f"≤ {T_FLUSH_MS:.0f} ms over bare Python, no `requests` import",
        )
    ]


FIGURE = Figure("flush", 80, bench_flush, rows_flush)
