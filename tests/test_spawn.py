"""The detached sender: safe from the user's current directory (issue 12, item 2), started without
subprocess where posix_spawn exists, with subprocess where it does not, never from a frozen or
embedded interpreter, and holding none of the host's pipes open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from receiver import Receiver, wait_for
from sender_setup import add_lines, day, make_app

PLANTED = """
import os
open(os.path.join(os.environ["PLANT_MARKER_DIR"], "planted-ran"), "w").write(os.getcwd())
raise SystemExit(0)
"""

HOST = """
import os, sys
{before}
import telemetry_rollup as tr
tr.configure("acme", endpoint=os.environ["TEST_ENDPOINT"])
tr.count("x")
{after}
"""


# registered before the library's exit hook, so it runs after it (atexit is last in, first out)
SHOW_SUBPROCESS = "import atexit\natexit.register(lambda: print('subprocess' in sys.modules))"


def host(
    tmp_path: Path, url: str, *, cwd: Path | None = None, before: str = "", after: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "host_script.py"  # a file, so sys.path[0] is its directory, not the cwd
    script.write_text(textwrap.dedent(HOST.format(before=before, after=after)))
    full = dict(os.environ, TEST_ENDPOINT=url, ACME_TELEMETRY="on", **env)
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=full, capture_output=True, text=True, timeout=60, check=False
    )


def due(home: Path, url: str) -> None:
    store = make_app(home, endpoint=url)
    add_lines(store, {(day(-1), "old"): 2})


def test_a_package_planted_in_the_cwd_never_runs(home: Path, tmp_path: Path, receiver: Receiver) -> None:
    repo = tmp_path / "cloned-repo"  # the directory the user runs the tool in
    (repo / "telemetry_rollup").mkdir(parents=True)
    (repo / "telemetry_rollup" / "__init__.py").write_text(PLANTED)
    (repo / "telemetry_rollup" / "__main__.py").write_text(PLANTED)
    markers = tmp_path / "markers"
    markers.mkdir()
    due(home, receiver.url)
    # planted in the app directory too: the sender changes to it, and it must not import from it
    (home / "acme" / "telemetry_rollup").mkdir()
    (home / "acme" / "telemetry_rollup" / "__init__.py").write_text(PLANTED)
    proc = host(tmp_path, receiver.url, cwd=repo, PLANT_MARKER_DIR=str(markers))
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: receiver.totals().get("old") == 2, 20), "the detached sender did not deliver"
    assert not (markers / "planted-ran").exists()  # the sender imported the library the host loaded


@pytest.mark.parametrize(
    "before",
    [
        "sys.frozen = True",  # PyInstaller and the like
        "sys.executable = '/usr/bin/true'",  # an embedded interpreter: the host binary is not a Python
        "sys.executable = ''",
    ],
)
def test_no_detached_sender_from_a_frozen_or_embedded_interpreter(
    home: Path, tmp_path: Path, receiver: Receiver, before: str
) -> None:
    due(home, receiver.url)
    proc = host(tmp_path, receiver.url, before=before)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    time.sleep(2.0)
    assert receiver.connections == 0
    # nothing was claimed for this send interval: the next real Python run sends
    assert not list((home / "acme").glob("autosend.*"))
    host(tmp_path, receiver.url)
    assert wait_for(lambda: receiver.totals().get("old") == 2, 20)


def test_without_posix_spawn_the_sender_starts_through_subprocess(
    home: Path, tmp_path: Path, receiver: Receiver
) -> None:
    due(home, receiver.url)
    proc = host(tmp_path, receiver.url, before="del os.posix_spawn\n" + SHOW_SUBPROCESS)
    assert proc.returncode == 0 and proc.stdout == "True\n", proc.stderr
    assert wait_for(lambda: receiver.totals().get("old") == 2, 20)


def test_with_posix_spawn_subprocess_is_never_imported(home: Path, tmp_path: Path, receiver: Receiver) -> None:
    if not hasattr(os, "posix_spawn"):
        pytest.skip("no posix_spawn here")
    due(home, receiver.url)
    proc = host(tmp_path, receiver.url, before=SHOW_SUBPROCESS)
    assert proc.returncode == 0 and proc.stdout == "False\n", proc.stderr
    assert wait_for(lambda: receiver.totals().get("old") == 2, 20)


def test_the_sender_holds_no_pipe_of_the_host_open(home: Path, tmp_path: Path, receiver: Receiver) -> None:
    """A caller reading a pipe the host inherited (a harness waiting for EOF) is not kept waiting
    by the detached sender, here stuck on an endpoint that never answers."""
    receiver.behaviour = "hang"
    due(home, receiver.url)
    r, w = os.pipe()
    script = tmp_path / "h.py"
    script.write_text(textwrap.dedent(HOST.format(before="", after="")))
    env = dict(os.environ, TEST_ENDPOINT=receiver.url, ACME_TELEMETRY="on")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, pass_fds=(w,))
    os.close(w)
    assert proc.wait(timeout=30) == 0
    assert wait_for(lambda: receiver.connections >= 1, 20)  # the sender is now waiting on the endpoint
    t0 = time.monotonic()
    assert os.read(r, 1) == b""  # EOF: nobody else holds the write end
    os.close(r)
    assert time.monotonic() - t0 < 2.0
    receiver.release.set()


def test_without_fcntl_appends_go_through_filelock(home: Path, tmp_path: Path) -> None:
    """Windows has no fcntl: the exit hook and the flusher lock through filelock instead."""
    code = """
        import sys, time
        sys.modules["fcntl"] = None   # as on Windows
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0.1)
        tr.count("early", 2)
        time.sleep(0.5)               # the flusher persists
        tr.count("late")              # and the exit hook
        print("host ok")
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout == "host ok\n" and "Traceback" not in proc.stderr, proc.stderr
    got: dict[str, int] = {}
    for line in (home / "acme" / "buffer.jsonl").read_text().splitlines():
        x = json.loads(line)
        got[x["n"]] = got.get(x["n"], 0) + x["c"]
    assert got == {"early": 2, "late": 1, "_run:script": 1}


def test_the_flusher_of_a_host_without_threading_never_imports_it(
    home: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """On Python <= 3.12 the first thread to import threading becomes its main thread and shutdown
    waits for it: the raw flusher must never be that thread (not even through subprocess, where
    posix_spawn is missing). It leaves the send to the exit hook, which may use subprocess."""
    due(home, receiver.url)
    code = """
        import os, sys, time
        del os.posix_spawn
        import telemetry_rollup as tr
        tr.configure("acme", endpoint=os.environ["TEST_ENDPOINT"], flush_interval=0.1, send_interval=0)
        tr.count("x")
        time.sleep(0.5)               # the flusher's passes: reports are due
        print(sorted(m for m in ("threading", "subprocess") if m in sys.modules))
    """
    env = dict(os.environ, TEST_ENDPOINT=receiver.url, ACME_TELEMETRY="on")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout == "[]\n", proc.stderr
    assert time.monotonic() - t0 < 10  # shutdown did not wait for the flusher
    assert wait_for(lambda: receiver.totals().get("old") == 2, 20)  # the exit hook's sender delivered


def _senders_for(home: Path) -> list[int]:
    """pids of detached senders started for this data root (their environment names it)."""
    needle = f"TELEMETRY_ROLLUP_HOME={home}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes() and b"--if-due" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the sender through /proc")
def test_the_sender_runs_at_a_lower_priority(home: Path, tmp_path: Path, receiver: Receiver) -> None:
    """It starts an interpreter just as the tool exits: on a busy machine it yields the CPU."""
    receiver.behaviour = "hang"  # keeps the sender alive long enough to look at
    due(home, receiver.url)
    proc = host(tmp_path, receiver.url)
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: receiver.connections >= 1, 20)
    (pid,) = _senders_for(home)
    try:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    finally:
        receiver.release.set()
