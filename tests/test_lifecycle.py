"""Off means off; the exit hook never waits on the network; fork, threads and the background flusher."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from helpers import run_py, run_py_timing_exit
from receiver import Receiver, wait_for
from sender_setup import add_lines, day, make_app

from telemetry_rollup._lifecycle import EXIT_BUDGET

HOST = """
import sys, telemetry_rollup as tr
tr.configure("acme", endpoint=sys.argv[1] if len(sys.argv) > 1 else {url!r}, flush_interval=0.2)
for i in range(50):
    tr.count("build")
tr.flush()
print(tr.send(timeout=2))
"""


@pytest.mark.parametrize(
    "env", [{"DO_NOT_TRACK": "1"}, {"DO_NOT_TRACK": "true"}, {"ACME_TELEMETRY": "0"}, {"ACME_TELEMETRY": "off"}]
)
def test_env_off_means_no_file_no_thread_no_connection(home: Path, receiver: Receiver, env: dict[str, str]) -> None:
    proc = run_py(HOST.format(url=receiver.url) + "\nimport _thread; print(_thread._count())", env=env)
    assert proc.stdout == "SendResult(sent=0, kept=0, dropped=0)\n0\n"  # no thread of any kind
    assert proc.stderr == ""
    assert not home.exists()
    time.sleep(0.3)
    assert receiver.connections == 0


def test_stored_off_deletes_nothing_it_should_keep_and_writes_nothing(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url, mode="off")
    before = sorted(p.name for p in Path(store.dir).iterdir())
    run_py(HOST.format(url=receiver.url))
    assert sorted(p.name for p in Path(store.dir).iterdir()) == before
    assert receiver.connections == 0


@pytest.mark.parametrize("dnt,app", [("", ""), ("0", "local"), ("false", ""), ("FALSE", "LOCAL")])
def test_values_that_are_not_an_opt_out_do_not_switch_off(home: Path, dnt: str, app: str) -> None:
    run_py(
        'import telemetry_rollup as tr; tr.configure("acme", default="local"); tr.count("x")',
        env={"DO_NOT_TRACK": dnt, "ACME_TELEMETRY": app},
    )
    assert (home / "acme" / "buffer.jsonl").exists()


@pytest.mark.parametrize("value", ["disabled", "disable", "none", "never", "n", "0ff", "maybe", "enable"])
def test_an_unrecognised_consent_value_fails_closed(home: Path, value: str) -> None:
    """``ACME_TELEMETRY=disabled`` is a clear attempt to opt out: nothing is written, nothing runs."""
    proc = run_py(
        'import threading, telemetry_rollup as tr; tr.configure("acme", default="on"); tr.count("x"); tr.flush();'
        " print(tr._default.mode, threading.active_count())",
        env={"ACME_TELEMETRY": value},
    )
    assert proc.stdout.split() == ["off", "1"]
    assert not home.exists()


def test_a_running_process_notices_a_stored_off(home: Path) -> None:
    code = """
        import json, sys, time, telemetry_rollup as tr
        from pathlib import Path
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("a"); tr.flush()
        d = Path(sys.argv[1]) / "acme"
        for p in list(d.iterdir()):
            if p.is_file(): p.unlink()
        (d / "mode.json").write_text(json.dumps({"mode": "off"}))
        tr.count("b"); tr.flush()
        print(sorted(p.name for p in d.iterdir()))
    """
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(home)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['mode.json']"


def test_exit_hook_spawns_a_detached_sender_and_never_waits(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "yesterday"): 3})
    receiver.behaviour = "hang"
    _, exit_took = run_py_timing_exit(
        f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); tr.count("x")'
    )
    # a hung endpoint does not hold the host's exit: timed from the end of the program (start-up
    # takes seconds on a loaded machine), the exit is the hook's few ms of work, well within its bound
    assert exit_took < EXIT_BUDGET + 1.0, exit_took
    assert wait_for(lambda: receiver.connections >= 1, 15)  # the detached sender did try
    receiver.release.set()


def test_exit_hook_sender_delivers(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "yesterday"): 3})
    run_py(f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); tr.count("x")')
    assert wait_for(lambda: receiver.totals() == {"yesterday": 3}, 15)
    # within send_interval no second automatic sender is started
    n = receiver.connections
    add_lines(store, {(day(-1), "more"): 1})
    run_py(f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); tr.count("x")')
    time.sleep(1.0)
    assert receiver.connections == n


def test_no_send_in_the_run_that_showed_the_notice(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    Path(store.mode_file).unlink()  # the user never chose: default on, notice pending
    add_lines(store, {(day(-1), "yesterday"): 3})
    proc = run_py(
        f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); '
        'tr.count("x"); print(tr.send(2))'
    )
    assert "acme collects anonymous usage counts" in proc.stderr
    assert proc.stdout == "SendResult(sent=0, kept=0, dropped=0)\n"
    time.sleep(1.0)
    assert receiver.connections == 0
    proc = run_py(f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); print(tr.send(3))')
    assert proc.stderr == "" and proc.stdout == "SendResult(sent=1, kept=0, dropped=0)\n"
    assert receiver.totals() == {"yesterday": 3}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_never_persists_the_parents_counts(home: Path) -> None:
    run_py(
        """
        import os, telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("parent", 10)
        pid = os.fork()
        if pid == 0:
            tr.count("child")
            raise SystemExit(0)
        os.waitpid(pid, 0)
        """
    )
    lines = [json.loads(x) for x in (home / "acme" / "buffer.jsonl").read_text().splitlines()]
    got: dict[str, int] = {}
    for x in lines:
        got[x["n"]] = got.get(x["n"], 0) + x["c"]
    assert got == {"parent": 10, "child": 1, "_run:script": 2}  # parent and child are two runs


def test_background_flusher_persists_without_exit_and_never_keeps_the_process_alive(home: Path) -> None:
    proc = run_py(
        """
        import os, time, telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0.1)
        tr.count("daemon", 3)
        time.sleep(0.6)
        print(open(os.path.join(os.environ["TELEMETRY_ROLLUP_HOME"], "acme", "buffer.jsonl")).read().count("daemon"))
        os._exit(0)  # like a SIGKILL: no exit hook; only what the flusher wrote survives
        """,
        timeout=20,
    )
    assert proc.stdout.strip() == "1"
    assert '"c":3' in (home / "acme" / "buffer.jsonl").read_text()


def test_configure_writes_nothing_and_a_run_rewrites_config_only_when_it_changed(home: Path) -> None:
    run_py('import telemetry_rollup as tr; tr.configure("acme", default="local")')
    assert not home.exists()  # configure() alone writes nothing, not even the data root
    code = 'import telemetry_rollup as tr; tr.configure("acme", default="local", app_version=%r); tr.count("x")'
    run_py(code % "1.0")
    config = home / "acme" / "config.json"
    first = config.stat()
    run_py(code % "1.0")
    assert config.stat().st_ino == first.st_ino  # the same file: not rewritten
    assert json.loads(config.read_text())["app_version"] == "1.0"
    run_py(code % "1.1")
    assert json.loads(config.read_text())["app_version"] == "1.1"  # a changed setting is written
