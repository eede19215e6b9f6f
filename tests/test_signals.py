"""SIGTERM at any instant of the exit path never hangs a process and loses no count (issue 12, item 1).

The SIGTERM handler (installed in multiprocessing children) takes no lock: ``with Pool(4)`` of
counting workers, fork and spawn, round after round, must never hang in ``terminate()``; and a
SIGTERM delivered deterministically at each step of the exit path, or while the host holds one of
the library's locks, ends the process by SIGTERM within its bound, with every count persisted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROUNDS = 50

POOLS = """
import multiprocessing as mp, sys, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=0)

def work(i):
    tr.count("task")
    return i

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    for r in range(int(sys.argv[2])):
        with ctx.Pool(4) as p:          # __exit__ terminates the workers with SIGTERM
            assert sum(p.map(work, range(40), chunksize=1)) == sum(range(40))
    print("done", flush=True)
"""


def buffered(home: Path) -> dict[str, int]:
    """Every count on disk, wherever it is: the buffer, spill files, or (once a sender claimed
    them) the committed generation's inputs, carry and reports."""
    app = home / "acme"
    lines = [app / "buffer.jsonl", *(app / "spill").glob("*.jsonl")]
    out: dict[str, int] = {}
    current = app / "outbox" / "CURRENT"
    if current.exists():
        gen = app / "outbox" / current.read_text().strip()
        lines += [*gen.glob("inputs/*.jsonl"), gen / "carry.jsonl"]
        for rep in gen.glob("reports/*.json"):
            for n, c in json.loads(rep.read_text())["counts"].items():
                out[n] = out.get(n, 0) + c
    for p in lines:
        if p.exists():
            for line in p.read_text().splitlines():
                x = json.loads(line)
                out[x["n"]] = out.get(x["n"], 0) + x["c"]
    return out


def run_script(tmp_path: Path, code: str, *args: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a host script in its own process group; on a hang, end the whole group (the workers too)."""
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **env),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"hung for {timeout} s: {err[-2000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_with_pool_of_counting_workers_never_hangs(home: Path, tmp_path: Path, method: str) -> None:
    # Before the fix a fork pool hung within ~20 rounds: terminate() waited forever for a worker
    # whose SIGTERM handler blocked on the lock its interrupted exit path held.
    proc = run_script(tmp_path, POOLS, method, str(ROUNDS), timeout=900)
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr[-2000:]
    assert buffered(home)["task"] == ROUNDS * 40  # every worker's counts, each once


# The steps of the exit path (telemetry_rollup/_lifecycle.py lists them) a multiprocessing child
# goes through when it leaves normally (its finaliser runs the exit path, without a sender).
CHILD_STEPS = [
    "exit:claimed",
    "exit:stopped",
    "exit:waited",
    "persist:taken",
    "persist:locked",
    "persist:appended",
    "persist:done",
]

CHILD = """
import multiprocessing as mp, os, sys, time, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=float(sys.argv[2]))

def child(step):
    os.environ["TELEMETRY_ROLLUP_TEST_SIGTERM_AT"] = step   # in the child only
    for _ in range(7):
        tr.count("made")
    tr.count("weight", 5)

if __name__ == "__main__":
    p = mp.get_context(sys.argv[1]).Process(target=child, args=(sys.argv[3],))
    t0 = time.monotonic()
    p.start()
    p.join(30)
    print(p.exitcode, round(time.monotonic() - t0, 2), flush=True)
    if p.is_alive():   # hung: leave no process behind
        p.kill()
        p.join()
"""


@pytest.mark.parametrize("flush_interval", ["0", "60"])
@pytest.mark.parametrize("step", CHILD_STEPS)
def test_sigterm_at_each_step_of_the_exit_path(home: Path, tmp_path: Path, step: str, flush_interval: str) -> None:
    proc = run_script(tmp_path, CHILD, "fork", flush_interval, step, timeout=60)
    assert proc.returncode == 0, proc.stderr
    code, took = proc.stdout.split()
    assert int(code) == -signal.SIGTERM, proc.stdout  # it still dies of the SIGTERM it received
    assert float(took) < 10  # never a hang (the exit path's own bound is 2 s)
    got = buffered(home)
    assert got["made"] == 7 and got["weight"] == 5, got  # and nothing counted was lost or doubled
    assert "Traceback" not in proc.stderr


HOLDS_A_LOCK = """
import multiprocessing as mp, os, signal, sys, time, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=0)

def child(what):
    if what == "flush":
        os.environ["TELEMETRY_ROLLUP_TEST_SIGTERM_AT"] = "persist:locked"  # fires inside flush()
    for _ in range(4):
        tr.count("made")
    if what == "counters":
        lock = tr._default._counters._lock   # the interrupted code holds the counters' lock
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)
    elif what == "flush":
        tr.flush()                           # SIGTERM arrives while it holds the persist lock and the flock
    elif what == "blocked":
        # The main thread never runs a Python handler again: as when SIGTERM lands just before it
        # blocks in a call the signal then cannot interrupt (an idle pool worker's queue lock).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)
    tr.count("after")                        # made after the signal: may or may not be persisted
    time.sleep(30)                           # the SIGTERM must end it long before this

if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=child, args=(sys.argv[1],))
    t0 = time.monotonic()
    p.start()
    p.join(30)
    print(p.exitcode, round(time.monotonic() - t0, 2), flush=True)
    if p.is_alive():   # hung: leave no process behind
        p.kill()
        p.join()
"""


@pytest.mark.parametrize("what", ["counters", "flush", "blocked"])
def test_sigterm_while_the_interrupted_code_holds_a_library_lock(home: Path, tmp_path: Path, what: str) -> None:
    t0 = time.monotonic()
    proc = run_script(tmp_path, HOLDS_A_LOCK, what, timeout=60)
    assert proc.returncode == 0, proc.stderr
    code, took = proc.stdout.split()
    # dies of SIGTERM; where the main thread can never run the handler, with SIGTERM's exit status
    expected = {-signal.SIGTERM, 128 + signal.SIGTERM} if what == "blocked" else {-signal.SIGTERM}
    assert int(code) in expected and float(took) < 10, (proc.stdout, time.monotonic() - t0)
    assert buffered(home)["made"] == 4


# A plain process (not a multiprocessing child) has no handler: the default action ends it. After
# the persist, that loses nothing; the steps before it are the documented window (SIGTERM kills).
@pytest.mark.parametrize("step", ["persist:done", "exit:due", "exit:spawned"])
def test_sigterm_after_the_exit_persist_of_a_plain_process(home: Path, tmp_path: Path, step: str) -> None:
    from sender_setup import add_lines, day, make_app

    store_url = "http://127.0.0.1:9/v1/rollups"  # refused: whatever a sender built stays on disk
    store = make_app(home, endpoint=store_url)
    add_lines(store, {(day(-1), "old"): 1})  # reports due: the exit path goes on to spawn a sender
    code = f'import telemetry_rollup as tr\ntr.configure("acme", endpoint={store_url!r})\ntr.count("x", 3)\n'
    proc = run_script(tmp_path, code, timeout=60, TELEMETRY_ROLLUP_TEST_SIGTERM_AT=step, ACME_TELEMETRY="on")
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    time.sleep(1.0)  # a detached sender, if one started, claims the buffer: counted wherever it is
    got = buffered(home)
    assert got.get("x") == 3 and got.get("old") == 1, got
