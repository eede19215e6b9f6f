"""A tool's whole short run (import, configure, 20 counts, exit) in each endpoint state, with nothing
due, and its parts: ``configure()`` cold and one exit hook with reports due. The SDKs' same run is
timed against the same endpoints; the matrix of all of them is this figure's own section."""

from __future__ import annotations

import datetime as _dt
import subprocess
import time
from pathlib import Path
from typing import Any

from rollup_bench import competitors
from rollup_bench.endpoints import Endpoints
from rollup_bench.figures import Ctx, Figure
from rollup_bench.harness import (
    APP_UNDER_HOME,
    PY,
    Row,
    base_env,
    copy_home,
    fmt_ms,
    fresh_dir,
    median,
    pct,
    reap_senders,
    skip_note,
    wall,
)

T_CLI_MS = 10.0  # a whole short run with reports due, in every endpoint state (issue 14)
T_CLI_IDLE_MS = 5.0  # the same with nothing due (the common run)
T_CONFIGURE_MS = 1.0
T_HOOK_CPU_MS = 3.0  # one exit hook's CPU time, reports due (it starts the detached sender)
COMPETITOR_TIMEOUT_S = 40  # an SDK's run still going then is killed (and counted as this long)

STATES = ("healthy", "refused", "never")
SHORT_RUN_MODULES = (
    "requests",
    "urllib3",
    "filelock",
    "orjson",
    "platformdirs",
    "pathlib",
    "typing",
    "json",
    "re",
    "threading",
    "subprocess",
    "logging",
)

OURS_CLI = """
import os, sys
if os.environ.get("BENCH_SHOW_MODULES"):
    import atexit
    atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
import telemetry_rollup as tr
tr.configure("benchcli", endpoint=sys.argv[1], app_version="1.0")
for i in range(20):
    tr.count("build" if i % 2 else f"cmd.{i % 5}")
"""

# configure() alone, cold (the first call in a fresh interpreter, as every CLI run makes it)
OURS_CONFIGURE = """
import os, sys, time
import telemetry_rollup as tr
t0 = time.perf_counter()
tr.configure("benchcli", endpoint=sys.argv[1], app_version="1.0")
os.write(1, b"%.9f\\n" % (time.perf_counter() - t0))
os._exit(0)  # no exit hook: configure() alone is measured
"""

# one exit hook, timed from inside (CPU of the main thread, and wall), reports due
OURS_HOOK = """
import atexit, os, sys, time
marks = {}
atexit.register(lambda: os.write(1, b"%.9f %.9f\\n" % (
    time.thread_time() - marks["cpu"], time.perf_counter() - marks["wall"])))  # runs last
import telemetry_rollup as tr
tr.configure("benchcli", endpoint=sys.argv[1], app_version="1.0")
for i in range(20):
    tr.count("build" if i % 2 else f"cmd.{i % 5}")  # the first count registers the library's exit hook
n = atexit._ncallbacks()
atexit.register(lambda: marks.update(cpu=time.thread_time(), wall=time.perf_counter()))  # runs first
assert n == 2, n  # ours, then the library's: a mark before the library's hook would time nothing
"""


def _seed_cli_homes(ep: Endpoints) -> tuple[Path, Path]:
    """Two homes where benchcli ran before (notice shown, config written, at the default data
    location): in one only today's counts are buffered (nothing due: the common run), in the
    other yesterday's (reports due: the exit hook starts the detached sender)."""
    idle = fresh_dir("cli-idle")
    env = base_env(HOME=str(idle))
    subprocess.run(
        [PY, "-c", OURS_CLI, ep.url("healthy", "/v1/rollups")], env=env, check=True, timeout=60, capture_output=True
    )
    reap_senders(f"HOME={idle}", 10)
    assert (idle / APP_UNDER_HOME / "notice").exists() and (idle / APP_UNDER_HOME / "config.json").exists()
    # The first run's counts were made before the notice was seen: they stay on the machine
    # (local-only lines), and nothing is sent before the notice's UTC day is over. So, as on a
    # machine where the tool ran the day before: the notice was shown yesterday, and a second
    # run writes counts that may be sent.
    (idle / APP_UNDER_HOME / "notice").write_text(str(int(time.time()) - 86400))
    subprocess.run(
        [PY, "-c", OURS_CLI, ep.url("healthy", "/v1/rollups")], env=env, check=True, timeout=60, capture_output=True
    )
    reap_senders(f"HOME={idle}", 10)
    due = copy_home(idle, "cli-due")
    buf = due / APP_UNDER_HOME / "buffer.jsonl"
    today = _dt.datetime.now(_dt.timezone.utc).date()
    yesterday = (today - _dt.timedelta(days=1)).isoformat().encode()
    buf.write_bytes(buf.read_bytes().replace(today.isoformat().encode(), yesterday))
    return idle, due


def bench_cli(ctx: Ctx) -> dict[str, Any]:
    p, ep = ctx.p, ctx.ep
    idle, due = _seed_cli_homes(ep)
    out: dict[str, Any] = {"ours": {}, "competitors": {}, "checks": {}}
    for state in ("idle", *STATES):
        url = ep.url("healthy" if state == "idle" else state, "/v1/rollups")
        template = idle if state == "idle" else due
        over: list[float] = []
        totals: list[float] = []
        left = 0
        started = 0
        delivered_before = ep.posts("/v1/rollups")
        for r in range(p.cli_rounds):
            home = copy_home(template, "cli")
            env = base_env(HOME=str(home))
            b = wall([PY, "-c", "pass"], env, 60) or float("nan")
            t = wall([PY, "-c", OURS_CLI, url], env, 60) or float("nan")
            over.append(t - b)
            totals.append(t)
            started += bool(list((home / APP_UNDER_HOME).glob("autosend.*")))
            left += reap_senders(f"HOME={home}", 0 if state == "never" else 15)
            if r == 0 and state in ("idle", "healthy"):
                # Not timed: which modules did the run (exit hook included) load?
                mc_before = ep.posts("/v1/rollups")
                home2 = copy_home(template, "cli-mods")
                env2 = base_env(HOME=str(home2), BENCH_SHOW_MODULES="1")
                res = subprocess.run(
                    [PY, "-c", OURS_CLI, url], env=env2, capture_output=True, text=True, timeout=60, check=False
                )
                mods = next((ln.split()[1:] for ln in res.stderr.splitlines() if ln.startswith("MODULES")), [])
                out["checks"][f"modules_{state}"] = sorted(m for m in mods if m.split(".")[0] in SHORT_RUN_MODULES)
                reap_senders(f"HOME={home2}", 15)
                delivered_before += ep.posts("/v1/rollups") - mc_before  # not one of the timed runs
        out["ours"][state] = {"over": median(over), "total": median(totals), "killed": left, "started": started}
        if state == "healthy":
            out["checks"]["delivered"] = ep.posts("/v1/rollups") - delivered_before
            out["checks"]["rounds"] = p.cli_rounds
    out["configure"] = _bench_configure(ctx, idle)
    out["hook"] = _bench_one_hook(ctx, due)
    for comp in competitors.with_cli():
        if not ctx.comps.get(comp.name) or p.quick or comp.cli is None:
            continue
        out["competitors"][comp.name] = {}
        for state in STATES:
            rounds = p.comp_never_rounds if state == "never" else p.comp_cli_rounds
            over = []
            timed_out = False
            for _ in range(rounds):
                home = fresh_dir("cli-comp")
                env = base_env(HOME=str(home))
                b = wall([PY, "-c", "pass"], env, 60) or float("nan")
                tc = wall([PY, "-c", comp.cli, ep.url(state)], env, COMPETITOR_TIMEOUT_S)
                if tc is None:
                    timed_out = True
                    tc = COMPETITOR_TIMEOUT_S * 1000.0
                over.append(tc - b)
            out["competitors"][comp.name][state] = {"over": median(over), "timed_out": timed_out}
    return out


def _bench_configure(ctx: Ctx, idle: Path) -> dict[str, Any]:
    """configure() alone, the first call in a fresh interpreter, at the default data location."""
    env = base_env(HOME=str(idle))
    ms = []
    for _ in range(ctx.p.configure_rounds):
        r = subprocess.run(
            [PY, "-c", OURS_CONFIGURE, ctx.ep.url("healthy", "/v1/rollups")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        ms.append(float(r.stdout.split()[0]) * 1000)
    return {"median": median(ms), "p90": pct(ms, 90)}


def _bench_one_hook(ctx: Ctx, due: Path) -> dict[str, Any]:
    """One exit hook with reports due (it starts the detached sender), timed from inside."""
    cpu: list[float] = []
    walls: list[float] = []
    started = 0
    for _ in range(ctx.p.hook_rounds):
        home = copy_home(due, "hook")
        r = subprocess.run(
            [PY, "-c", OURS_HOOK, ctx.ep.url("healthy", "/v1/rollups")],
            env=base_env(HOME=str(home)),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        c, w = (float(x) * 1000 for x in r.stdout.split())
        cpu.append(c)
        walls.append(w)
        started += bool(list((home / APP_UNDER_HOME).glob("autosend.*")))
        reap_senders(f"HOME={home}", 15)
    return {"cpu": median(cpu), "cpu_p90": pct(cpu, 90), "wall": median(walls), "started": started, "rounds": len(cpu)}


def rows_cli(cli: dict[str, Any], quick: bool) -> list[Row]:
    rows = []
    names = {"healthy": "healthy", "refused": "refused", "never": "never answering"}
    for state in STATES:
        ours = cli["ours"][state]["over"]
        comp_txt = []
        for c in competitors.with_cli():
            cc = cli["competitors"].get(c.name, {}).get(state)
            if cc is None:
                comp_txt.append(skip_note(c.name, quick))
            else:
                killed = f" (killed at {COMPETITOR_TIMEOUT_S} s)" if cc["timed_out"] else ""
                comp_txt.append(f"{c.name} +{fmt_ms(cc['over'])}" + killed)
        extra = f"; a detached sender started in {cli['ours'][state]['started']} of {cli['checks']['rounds']} runs"
        if state == "healthy":
            mods = ", ".join(cli["checks"].get("modules_healthy", [])) or "none of " + "/".join(SHORT_RUN_MODULES)
            extra += (
                f", and delivered {cli['checks']['delivered']} runs' reports; the run (exit hook included) loads {mods}"
            )
        rows.append(
            Row.judged(
                f"cli-{state}",
                ours <= T_CLI_MS,
                f"by {ours - T_CLI_MS:.1f} ms",
                "whole CLI run (import, configure, 20 counts, exit; reports due; default data location), "
                f"endpoint {names[state]}",
                f"+{fmt_ms(ours)} over bare Python{extra}",
                "; ".join(comp_txt),
                f"≤ {T_CLI_MS:.0f} ms over bare Python",
            )
        )

    ours = cli["ours"]["idle"]["over"]
    mods = ", ".join(cli["checks"].get("modules_idle", [])) or "none of " + "/".join(SHORT_RUN_MODULES)
    rows.append(
        Row.judged(
            "cli-idle",
            ours <= T_CLI_IDLE_MS,
            f"by {ours - T_CLI_IDLE_MS:.1f} ms",
            "whole CLI run with nothing due (the common run)",
            f"+{fmt_ms(ours)} over bare Python; loads {mods}; a sender started in "
            f"{cli['ours']['idle']['started']} of {cli['checks']['rounds']} runs",
            f"the same run with reports due +{fmt_ms(cli['ours']['healthy']['over'])}",
            f"≤ {T_CLI_IDLE_MS:.0f} ms over bare Python",
        )
    )

    conf = cli["configure"]
    rows.append(
        Row.judged(
            "configure",
            conf["median"] <= T_CONFIGURE_MS,
            f"by {conf['median'] - T_CONFIGURE_MS:.2f} ms",
            "`configure()`, the first call in a fresh interpreter",
            f"{conf['median']:.2f} ms (p90 {conf['p90']:.2f} ms); writes nothing",
            "it reads the stored choice and checks the data directories; config.json is compared (and written only "
            "when it changed) at the first persist",
            f"≤ {T_CONFIGURE_MS:.0f} ms",
        )
    )

    hook = cli["hook"]
    rows.append(
        Row.judged(
            "hook",
            hook["cpu"] <= T_HOOK_CPU_MS and hook["started"] == hook["rounds"],
            f"by {hook['cpu'] - T_HOOK_CPU_MS:.2f} ms"
            if hook["cpu"] > T_HOOK_CPU_MS
            else f"(a sender started in {hook['started']} of {hook['rounds']} runs)",
            "exit hook CPU time, reports due (it starts the detached sender)",
            f"{hook['cpu']:.2f} ms (p90 {hook['cpu_p90']:.2f} ms); wall {hook['wall']:.2f} ms; a sender started in "
            f"{hook['started']} of {hook['rounds']} runs",
            "persist (raw flock, one append), due check (a few small reads), `os.posix_spawn` of the sender",
            f"≤ {T_HOOK_CPU_MS:.0f} ms",
        )
    )
    return rows


def section_cli(cli: dict[str, Any]) -> str:
    """The whole-CLI-run matrix: every SDK by endpoint state."""
    matrix = ["| SDK | healthy | refused | never answering |", "|---|---|---|---|"]
    matrix.append("| telemetry_rollup | " + " | ".join("+" + fmt_ms(cli["ours"][s]["over"]) for s in STATES) + " |")
    for comp, states in cli["competitors"].items():
        matrix.append(
            f"| {comp} | "
            + " | ".join(
                "+" + fmt_ms(states[s]["over"]) + (" (killed)" if states[s]["timed_out"] else "") for s in STATES
            )
            + " |"
        )
    return "\n".join(
        [
            "## Whole CLI run, by endpoint state (median wall time over `python -c pass`)",
            "",
            "Each run: a fresh interpreter imports the SDK, configures it against an endpoint on 127.0.0.1, "
            "records 20 events, and exits. For telemetry_rollup the data root already holds yesterday's "
            "counts, so the exit hook finds reports due and starts the detached sender (which runs after "
            "the measured process has gone). The SDKs send from the exiting process, so their exit waits "
            "for the network.",
            "",
            "\n".join(matrix),
        ]
    )


FIGURE = Figure("cli", 50, bench_cli, rows_cli, section_cli)
