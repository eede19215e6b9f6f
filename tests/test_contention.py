"""100 processes exiting at the same moment plus 5 senders; shutdown during a background send."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from receiver import Receiver, wait_for
from sender_setup import add_lines, day, make_app

from telemetry_rollup import _sender

EXITER = """
import atexit, os, sys, time
ends = {}
atexit.register(lambda: sys.stderr.write(
    f"hook {time.monotonic() - ends['start']:.4f} {time.process_time() - ends['cpu']:.4f}\\n"))  # runs last
import telemetry_rollup as tr
tr.configure("acme", endpoint=sys.argv[1], flush_interval=0)
atexit.register(lambda: ends.update(start=time.monotonic(), cpu=time.process_time()))  # runs first (LIFO)
for i in range(20):
    tr.count("hit")
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
"""


@pytest.mark.slow
def test_hundred_exits_at_once_with_five_senders(home: Path, receiver: Receiver, tmp_path: Path) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "old"): 1})
    go = tmp_path / "go"
    script = tmp_path / "exiter.py"
    script.write_text(textwrap.dedent(EXITER))
    env = dict(os.environ, ACME_TELEMETRY="on")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), receiver.url, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(100)
    ]
    time.sleep(3.0)  # let them all reach the barrier
    go.touch()
    senders = [
        subprocess.Popen([sys.executable, "-m", "telemetry_rollup", "flush", "--app", "acme", "--quiet"], env=env)
        for _ in range(5)
    ]
    durations: list[float] = []
    cpu: list[float] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out == "", err
        (line,) = [x for x in err.splitlines() if x.startswith("hook ")]
        durations.append(float(line.split()[1]))
        cpu.append(float(line.split()[2]))
    for s in senders:
        s.wait(timeout=60)
    durations.sort()
    cpu.sort()
    # What holds however loaded the machine is: every hook's own work is small (CPU time), and
    # nothing is lost or sent twice (below). The hook's wall time is its bounded waiting (1 s for
    # the lock, then a spill file; 2 s in all: tests/test_crash.py checks that bound on one exit)
    # plus waiting for a core behind 100 interpreters and 5 senders, and whatever else the machine
    # runs: measured and printed, not asserted.
    assert cpu[-1] <= 0.25, cpu[-5:]
    print(
        f"exit hooks: wall p50 {durations[50] * 1000:.1f} ms, p99 {durations[98] * 1000:.1f} ms, "
        f"max {durations[-1] * 1000:.1f} ms; CPU p50 {cpu[50] * 1000:.1f} ms, max {cpu[-1] * 1000:.1f} ms"
    )
    # no lock left behind blocks the next run: an explicit flush gets everything out
    res = _sender.run(store, timeout=10, force=True, include_today=True, environ=env)
    assert res.busy is False
    assert wait_for(lambda: receiver.totals().get("hit") == 2000, 20), receiver.totals()
    assert receiver.totals()["old"] == 1
    assert set(receiver.deliveries.values()) == {1}


def test_interpreter_shutdown_while_the_background_thread_is_in_a_send(
    home: Path, receiver: Receiver, tmp_path: Path
) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "old"): 2})
    receiver.behaviour = "hang"
    go, ended = tmp_path / "go", tmp_path / "ended"
    # A host that uses threads (threading imported by its main thread): the flusher sends in-process.
    code = f"""
        import os, threading, time, telemetry_rollup as tr
        tr.configure("acme", endpoint={receiver.url!r}, flush_interval=0.1, send_interval=0)
        tr.count("x", 4)
        while not os.path.exists({str(go)!r}):  # until the flusher is inside a send that never ends
            time.sleep(0.01)
        with open({str(ended)!r}, "w") as f:
            f.write(repr(time.monotonic()))
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=dict(os.environ, ACME_TELEMETRY="on"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # however slowly the machine starts the child, the flusher's send reaches the server first
        assert wait_for(lambda: receiver.connections >= 1, 60)
        in_send = time.monotonic()
        go.touch()
        out, err = proc.communicate(timeout=60)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == "" and "Traceback" not in err, err
    exit_took = exited - float(ended.read_text())
    print(f"exit with a send in flight: {exit_took * 1000:.0f} ms from the end of the program")
    # The send in flight gives up 5 s after it began (before `in_send`); an exit that waited for it
    # would end after that. The exit itself is a few ms of CPU plus the hook's bounded waiting.
    assert exited - in_send < 4.0, (exited - in_send, exit_took)
    receiver.release.set()
    receiver.behaviour = "ok"
    _sender.run(store, timeout=5, force=True, include_today=True, environ={"ACME_TELEMETRY": "on"})
    got = receiver.totals()
    assert got["old"] == 2 and got["x"] == 4
