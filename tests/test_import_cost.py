"""The short-CLI path loads bare Python plus a short, documented list of modules (issue 14).

Pinned exactly: the set ``sys.modules`` gains for ``import telemetry_rollup``, for a whole short
run with nothing due, and for a whole short run with reports due that starts the detached sender.
A change that pulls in a heavy module (``pathlib``, ``typing``, ``json``, ``re``, ``threading``,
``subprocess``, ``logging``, a dependency) fails here, not in a benchmark nobody reads. When a
change must add a module, add it here and to docs/design.md ("What a short CLI loads") with its cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from receiver import Receiver, wait_for
from sender_setup import add_lines, day, make_app

#: ``import telemetry_rollup``: the hot path only (the rest loads at the first configure())
IMPORT = {
    "__future__",
    "itertools",
    "telemetry_rollup",
    "telemetry_rollup._counters",
    "telemetry_rollup._days",
    "telemetry_rollup._log",
    "telemetry_rollup._names",
    "telemetry_rollup._telemetry",
}
#: a whole run: configure, counts, the exit hook (persist, notice check, config check, due check)
RUN = IMPORT | {
    "atexit",
    "errno",
    "fcntl",
    "telemetry_rollup._consent",
    "telemetry_rollup._due",
    "telemetry_rollup._endpoint",
    "telemetry_rollup._flat",
    "telemetry_rollup._fs",
    "telemetry_rollup._lifecycle",
    "telemetry_rollup._line",
    "telemetry_rollup._paths",
    "telemetry_rollup._persist",
    "telemetry_rollup._store",
    "telemetry_rollup._validate",
}
#: ... that also starts the detached sender
RUN_DUE = RUN | {"telemetry_rollup._spawn"}

HEAVY = ("typing", "logging", "re", "json", "datetime", "pathlib", "threading", "subprocess", "collections")
DEPENDENCIES = ("orjson", "filelock", "platformdirs", "requests")

CLI = """
import sys
before = set(sys.modules)
import atexit  # registered first, so it runs last: after the library's exit hook
atexit.register(lambda: print(" ".join(sorted(set(sys.modules) - before))))
import telemetry_rollup as tr
tr.configure("acme", endpoint=sys.argv[1])
for i in range(20):
    tr.count("build" if i % 2 else "cmd.%d" % (i % 5))
"""


def gained(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def preloaded() -> set[str]:
    """What this interpreter loads before any user code (a site hook may preload some)."""
    return gained("import sys; print(' '.join(sys.modules))")


def test_import_loads_only_the_pinned_modules() -> None:
    got = gained("import sys; b = set(sys.modules); import telemetry_rollup; print(' '.join(set(sys.modules) - b))")
    assert got == IMPORT - preloaded(), sorted(got ^ (IMPORT - preloaded()))
    assert got.isdisjoint(HEAVY + DEPENDENCIES)


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the pinned set is the POSIX one (fcntl, posix_spawn)")
def test_a_short_run_with_nothing_due_loads_only_the_pinned_modules(home: Path, receiver: Receiver) -> None:
    env = {"ACME_TELEMETRY": "on"}
    # The first run writes config.json; every later run of the same version only appends.
    gained(CLI, receiver.url, env=env)
    got = gained(CLI, receiver.url, env=env)
    assert got == RUN - preloaded(), sorted(got ^ (RUN - preloaded()))
    assert not list((home / "acme").glob("autosend.*"))  # indeed nothing was due


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the pinned set is the POSIX one (fcntl, posix_spawn)")
@pytest.mark.parametrize("chosen", [False, True])
def test_a_short_run_that_starts_the_sender_loads_only_the_pinned_modules(
    home: Path, receiver: Receiver, chosen: bool
) -> None:
    store = make_app(home, endpoint=receiver.url)  # earlier runs left yesterday's counts
    add_lines(store, {(day(-1), "old"): 5})
    # a user's stored choice (mode.json) or the default with its notice shown before
    env = {} if chosen else {"ACME_TELEMETRY": "on"}
    if not chosen:
        os.unlink(store.mode_file)
        (home / "acme" / "notice").write_text("0")
    (home / "acme" / "config.json").write_text(json.dumps({"app": "acme"}))  # an older config: rewritten
    got = gained(CLI, receiver.url, env=env)
    assert got == RUN_DUE - preloaded(), sorted(got ^ (RUN_DUE - preloaded()))
    assert wait_for(lambda: receiver.totals().get("old") == 5, 20)  # and the sender it started delivered


def test_a_run_that_counts_nothing_loads_no_lifecycle_and_starts_nothing(home: Path, receiver: Receiver) -> None:
    """--help, --version: configure() then nothing counted. No exit hook, thread or file."""
    code = (
        "import sys, _thread, telemetry_rollup as tr\n"
        "tr.configure('acme', endpoint=sys.argv[1])\n"
        "print(_thread._count(), 'telemetry_rollup._lifecycle' in sys.modules, 'atexit' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, receiver.url], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout == "0 False False\n", proc.stderr
    assert not home.exists()


def test_flush_if_due_with_nothing_due_loads_no_sender(home: Path, receiver: Receiver) -> None:
    """A cron job's ``flush --if-due``, nothing due: the sender, the deletion request, requests and
    the output formatting are not even imported (a pending deletion request or a due send loads them)."""
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(0), "today"): 1})  # counted today: nothing is due before the day ends
    code = """
        import sys
        before = set(sys.modules)
        from telemetry_rollup.cli import main
        code = main(["flush", "--if-due", "--app", "acme"])
        print(code, " ".join(sorted(set(sys.modules) - before)))
    """
    got = gained(code)
    assert "0" in got
    # Only the library's own modules and its dependencies: which standard modules argparse and
    # shutil pull in differs between Python versions (3.9's bz2 imports threading).
    unwanted = {"telemetry_rollup._sender", "telemetry_rollup._pipeline", "telemetry_rollup._control"}
    unwanted |= {"telemetry_rollup._transport", "telemetry_rollup._format", "telemetry_rollup._rollup"}
    assert got.isdisjoint(unwanted | set(DEPENDENCIES)), sorted(got & (unwanted | set(DEPENDENCIES)))
    assert receiver.bodies == [] and (home / "acme" / "buffer.jsonl").exists()  # indeed nothing was sent
