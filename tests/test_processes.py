"""Counts made in multiprocessing workers arrive: fork and spawn pools, Pool's SIGTERM, Process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

POOL = """
import multiprocessing as mp, sys, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=0)

def work(i):
    tr.count("task")
    tr.count("weight", i)
    return i

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    tr.count("parent")
    if sys.argv[2] == "with":
        with ctx.Pool(3) as p:          # __exit__ terminates the workers with SIGTERM
            assert sum(p.map(work, range(60))) == sum(range(60))
    else:
        p = ctx.Pool(3)
        p.map(work, range(60))
        p.close(); p.join()              # workers leave through os._exit
    pr = ctx.Process(target=work, args=(1000,))
    pr.start(); pr.join()
"""


def buffered(home: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in [home / "acme" / "buffer.jsonl", *(home / "acme" / "spill").glob("*.jsonl")]:
        if p.exists():
            for line in p.read_text().splitlines():
                x = json.loads(line)
                out[x["n"]] = out.get(x["n"], 0) + x["c"]
    return out


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("style", ["with", "close"])
def test_pool_workers_counts_arrive(home: Path, tmp_path: Path, method: str, style: str) -> None:
    script = tmp_path / "pool_host.py"
    script.write_text(textwrap.dedent(POOL))
    proc = subprocess.run([sys.executable, str(script), method, style], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    got = buffered(home)
    assert got["task"] == 61 and got["weight"] == sum(range(60)) + 1000 and got["parent"] == 1


def test_sigterm_to_a_daemon_loses_at_most_what_the_default_action_would(home: Path, tmp_path: Path) -> None:
    # A plain process (not a multiprocessing child) keeps the default SIGTERM action: the library
    # installs no handler there. What the background flusher wrote survives; the rest is the
    # documented loss window (counts since the last flush).
    code = """
        import time, telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0.1)
        tr.count("early", 5)
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(30)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert buffered(home)["early"] == 5


def test_sigint_runs_the_exit_hook(home: Path) -> None:
    # Ctrl-C as in a terminal: a test runner started in the background by a non-interactive shell
    # (a CI job, `cmd &`) has SIGINT ignored, children inherit that, and Python then leaves it so.
    code = """
        import signal, time, telemetry_rollup as tr
        signal.signal(signal.SIGINT, signal.default_int_handler)
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("x", 3)
        print("ready", flush=True)
        time.sleep(30)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert buffered(home)["x"] == 3


def test_threads_counting_while_another_thread_forks(home: Path) -> None:
    code = """
        import os, threading, telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        stop = threading.Event()
        def spin():
            while not stop.is_set():
                tr.count("spin")
        ts = [threading.Thread(target=spin) for _ in range(3)]
        for t in ts: t.start()
        pids = []
        for i in range(5):
            pid = os.fork()
            if pid == 0:
                tr.count("child")
                tr.flush()
                os._exit(0)
            pids.append(pid)
        for pid in pids: os.waitpid(pid, 0)
        stop.set()
        for t in ts: t.join()
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)
    got = buffered(home)
    assert got["child"] == 5  # children persisted their own counts, never the parent's
    assert got["spin"] > 0
