"""The harness: parameters, rounds and their statistics, child-process timing, the sandbox.

Every child this package starts runs with :func:`base_env` (no opt-out, no real home, no stray
settings) and, where it writes, below the run's sandbox directory (made and removed by
:func:`sandbox`). A figure measured inside a fresh interpreter is a function registered with
:func:`in_child` and run by :func:`worker`; a figure timed as a whole process goes through :func:`wall`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
RUN = ROOT / "benchmarks" / "run.py"  # the entry point; children run it with ``--worker NAME``
PY = sys.executable
DOC = ROOT / "docs" / "benchmarks.md"

APP_UNDER_HOME = Path(".local") / "state" / "telemetry-rollup" / "benchcli"  # the default data location


class Params:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.micro_rounds = 2 if quick else 11
        self.micro_n = 2_000 if quick else 200_000  # calls per timing, cheap subjects
        self.micro_slow_n = 50 if quick else 2_000  # calls per timing, the SDKs (µs per call)
        self.thread_n = 2_000 if quick else 200_000  # calls per thread per round
        self.thread_rounds = 2 if quick else 7
        self.import_rounds = 2 if quick else 21
        self.cli_rounds = 1 if quick else 21
        self.configure_rounds = 2 if quick else 21
        self.hook_rounds = 2 if quick else 21
        self.comp_cli_rounds = 0 if quick else 5
        self.comp_never_rounds = 0 if quick else 3
        self.exit_procs = 8 if quick else 100
        self.exit_counts = 100 if quick else 1000
        self.collapse_rounds = 2 if quick else 21
        self.flush_rounds = 2 if quick else 21
        self.mem_names = 20_000 if quick else 1_000_000


# ---------------------------------------------------------------------------------------------
# statistics and the table's wording


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def verdict(ok: bool, miss: str = "") -> str:
    return "met" if ok else f"**missed** {miss}".strip()


def fmt_ms(x: float) -> str:
    if x != x:  # noqa: PLR0124 - nan
        return "n/a"
    if abs(x) >= 1000:
        return f"{x / 1000:.1f} s"
    return f"{x:.1f} ms"


def skip_note(name: str, quick: bool) -> str:
    """What a competitor's cell says when it was not measured."""
    if quick:
        return f"{name}: skipped (--quick)"
    return f"{name}: not installed, skipped"


@dataclass(frozen=True)
class Row:
    """One line of the report's table, and the short name it adds to "targets missed" when missed."""

    figure: str
    ours: str
    compared: str
    target: str
    result: str
    missed: str | None

    @classmethod
    def judged(cls, key: str, ok: bool, miss: str, figure: str, ours: str, compared: str, target: str) -> Row:
        return cls(figure, ours, compared, target, verdict(ok, miss), None if ok else key)

    def cells(self) -> list[str]:
        return [self.figure, self.ours, self.compared, self.target, self.result]


# ---------------------------------------------------------------------------------------------
# the sandbox and the children's environment

#: every file and home directory of the run lives below this; set by sandbox(), removed at its end
_SANDBOX = Path(tempfile.gettempdir())


@contextlib.contextmanager
def sandbox() -> Iterator[Path]:
    global _SANDBOX
    _SANDBOX = Path(tempfile.mkdtemp(prefix="tr-bench-"))
    try:
        yield _SANDBOX
    finally:
        shutil.rmtree(_SANDBOX, ignore_errors=True)


def base_env(**extra: str) -> dict[str, str]:
    """The environment of every child: no opt-out, no real home, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not (k.endswith("_TELEMETRY") or k.startswith("TELEMETRY_ROLLUP"))}
    for k in ("DO_NOT_TRACK", "XDG_STATE_HOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "CI"):
        env.pop(k, None)
    env["HOME"] = str(_SANDBOX / "home")
    env.update(extra)
    return env


def fresh_dir(name: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_SANDBOX))
    return d


def copy_home(template: Path, name: str) -> Path:
    home = fresh_dir(name)
    shutil.rmtree(home)
    shutil.copytree(template, home)
    return home


def have(module: str) -> bool:
    """Is ``module`` importable by the interpreter under test (checked in a child: no import here)."""
    r = subprocess.run([PY, "-c", f"import {module}"], capture_output=True, env=base_env(), timeout=120, check=False)
    return r.returncode == 0


def _children_with(marker: str) -> list[int]:
    """pids of processes whose environment holds ``marker`` (the detached senders we caused)."""
    pids = []
    needle = marker.encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def reap_senders(marker: str, wait: float) -> int:
    """Wait up to ``wait`` s for the detached senders started under ``marker``, then end them by pid."""
    deadline = time.monotonic() + wait
    pids = _children_with(marker)
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = _children_with(marker)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


# ---------------------------------------------------------------------------------------------
# timing in children

ChildFn = Callable[[dict[str, Any]], dict[str, Any]]

#: the functions a fresh interpreter can run (``run.py --worker NAME``), filled by the figure modules
WORKERS: dict[str, ChildFn] = {}


def in_child(name: str) -> Callable[[ChildFn], ChildFn]:
    """Register a function that :func:`worker` runs in a fresh interpreter under ``name``."""

    def register(fn: ChildFn) -> ChildFn:
        if name in WORKERS:
            raise ValueError(f"two workers named {name!r}")
        WORKERS[name] = fn
        return fn

    return register


def worker(name: str, args: dict[str, Any], *, timeout: float = 900, env: dict[str, str] | None = None) -> Any:
    """Run ``run.py --worker name`` in a fresh interpreter; its last stdout line is JSON."""
    r = subprocess.run(
        [PY, str(RUN), "--worker", name, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env or base_env(),
        timeout=timeout,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def wall(cmd: list[str], env: dict[str, str], timeout: float) -> float | None:
    """Wall time of one child process in ms (None when it outlived ``timeout``).

    A blocking wait, never ``Popen.wait(timeout)``: that polls with sleeps growing to 50 ms, which
    would round every time up to its next poll."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    p.wait()
    elapsed = (time.perf_counter() - start) * 1000
    killer.cancel()
    return None if elapsed >= timeout * 1000 else elapsed


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
