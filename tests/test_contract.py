"""Issue 18: what TELEMETRY.md and README promise is what happens. Each test runs the real thing
(subprocesses, a recording receiver on 127.0.0.1, the files on disk) and pins one statement."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import clean_env, day, listing, plant, run_cli
from receiver import Receiver


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` with a hash of its bytes (directories as "dir")."""
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = str(p.relative_to(directory))
        if rel != "sender.lock":  # a lock file is not the pipeline
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- item 1: looking never changes what will be sent or when --------------------------------------
def test_show_view_and_status_are_read_only_on_the_pipeline(home: Path, receiver: Receiver, tmp_path: Path) -> None:
    plant(home, "acme", {(day(-1), "build"): 2, (day(0), "build"): 5}, endpoint=receiver.url)
    (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    assert run_cli(home, "reset-id", "--app", "acme").returncode == 0
    before = _snapshot(home / "acme")
    for args in (
        ("show", "--app", "acme", "--include-today"),
        ("show", "--app", "acme", "--raw", "--include-today"),
        ("show", "--app", "acme"),
        ("status", "--app", "acme"),
        ("status", "--json"),
        ("view", "--app", "acme", "--no-open", "--out", str(tmp_path / "v.html")),
    ):
        res = run_cli(home, *args)
        assert res.returncode == 0, (args, res.stderr)
        after = _snapshot(home / "acme")
        assert after == before, args
    shown = run_cli(home, "show", "--app", "acme", "--raw", "--include-today").stdout
    assert [r["counts"] for b in map(json.loads, shown.splitlines()) for r in b["reports"]] == [
        {"build": 2},
        {"build": 5},
    ]
    assert receiver.bodies == []
    # The next send is what it would have been without looking: yesterday only, today stays open.
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    assert [r["day"] for b in receiver.json_bodies() for r in b["reports"]] == [day(-1)]
    doc = json.loads(run_cli(home, "status", "--json").stdout)
    assert [(d["day"], d["counts"], d["state"]) for d in doc["apps"][0]["pending"]["days"]] == [(day(0), 5, "open")]


# -- item 2: the tool's own telemetry command sends nothing -----------------------------------------
HOST_COUNTING_EVERY_COMMAND = """
import argparse, sys, telemetry_rollup as tr
from telemetry_rollup.cli import add_telemetry_command
tr.configure("acme", endpoint=sys.argv[1], send_interval=60)
parser = argparse.ArgumentParser(prog="acme")
sub = parser.add_subparsers(dest="command", required=True)
sub.add_parser("build").set_defaults(func=lambda a: 0)
add_telemetry_command(sub, app="acme")
args = parser.parse_args(sys.argv[2:])
tr.count(f"command:{args.command}")  # a pre-action hook that counts every command, as codegraph's did
raise SystemExit(args.func(args))
"""


@pytest.mark.parametrize("command", ["status", "show", "view --no-open", "local", "off", "on"])
def test_the_tools_own_telemetry_command_sends_nothing(home: Path, receiver: Receiver, command: str) -> None:
    plant(home, "acme", {(day(-2), "build"): 4}, endpoint=receiver.url, send_interval=60)
    (home / "acme" / "notice").write_text("0")
    (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    env = clean_env(home)
    res = subprocess.run(
        [sys.executable, "-c", HOST_COUNTING_EVERY_COMMAND, receiver.url, "telemetry", *command.split()],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert not [p for p in listing(home / "acme") if p.startswith("autosend.")]  # no sender was started
    time.sleep(1.5)
    assert receiver.connections == 0
    # The same host's ordinary command does start the automatic send (the test can fail).
    if command in ("status", "show"):
        res = subprocess.run(
            [sys.executable, "-c", HOST_COUNTING_EVERY_COMMAND, receiver.url, "build"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert receiver.wait_for(1)
