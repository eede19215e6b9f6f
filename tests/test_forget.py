"""The deletion request that a stored ``off`` sends, against the reference server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cli_helpers import Receiver, day, listing, main_inproc, plant, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
from helpers import identity
from server_helpers import Server, free_port, new_id, rollup2, start_server_process, totals

from telemetry_rollup._control import FORGET_MAX_AGE, forget_requests, retry_forget
from telemetry_rollup._identity import REDACTED
from telemetry_rollup._store import AppStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    for k in ("DO_NOT_TRACK", "ACME_TELEMETRY", "TELEMETRY_ROLLUP_DEBUG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TELEMETRY_ROLLUP_HOME", str(h))
    return h


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)


def sent_once(home: Path, url: str) -> str:
    plant(home, "acme", {(day(-1), "build"): 30, (day(-2), "lint"): 9}, endpoint=url)
    (home / "acme" / "notice").write_text("0")
    res = run_cli(home, "flush", "--app", "acme")
    assert res.returncode == 0, res.stdout + res.stderr
    return identity(home / "acme")[1]


def test_off_asks_the_reference_server_to_forget(home: Path, tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'rollups.db'}", tmp_path)
    try:
        url = server.url + "/v1/rollups"
        key = sent_once(home, url)
        assert totals(server, "acme") == {(day(-1), "build"): (30, 1), (day(-2), "lint"): (9, 1)}
        res = run_cli(home, "off", "--app", "acme")
        assert res.returncode == 0 and "acknowledged" in res.stdout
        assert listing(home / "acme") == {"mode.json"}
        assert totals(server, "acme") == {}
        # a late report under the forgotten id (a process that still had the key) is refused
        late = server.post(rollup2("acme", key, [{"id": new_id(), "day": day(-1), "counts": {"build": 1}}]))
        assert late.status_code == 403
    finally:
        server.stop()


def test_a_failed_request_is_kept_and_retried_by_flush(home: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/rollups"
    db = f"sqlite:///{tmp_path / 'rollups.db'}"
    first = start_server_process(db, port=port)  # the first send works, then the server goes away
    try:
        plant(home, "acme", {(day(-1), "build"): 30}, endpoint=url)
        (home / "acme" / "notice").write_text("0")
        assert run_cli(home, "flush", "--app", "acme").returncode == 0
    finally:
        stop(first)
    mid, key = identity(home / "acme")
    res = run_cli(home, "off", "--app", "acme", "--timeout", "2")
    assert res.returncode == 0 and "kept for a later flush" in res.stdout
    assert listing(home / "acme") == {"mode.json", "forget.json"}
    (req,) = forget_requests(AppStore(home / "acme"))
    assert req["machine_id"] == mid and req["endpoint"] == url and req["attempts"] == 1
    code, out, _ = main_inproc("status", "--app", "acme")
    assert code == 0 and f"deletion request   for old id {mid}" in out
    code, out, err = main_inproc("show", "--app", "acme", "--raw")
    proof = f'"machine_key":"{REDACTED}"'
    assert out == '{"schema":2,"app":"acme","machine_id":"' + mid + '",' + proof + ',"forget":true}\n'
    assert key not in out + err and key in (home / "acme" / "forget.json").read_text()
    assert oct((home / "acme" / "forget.json").stat().st_mode & 0o777) == "0o600"

    server = start_server_process(db, port=port)
    try:
        # an environment opt-out sends nothing at all, the deletion request included
        res = run_cli(home, "flush", DO_NOT_TRACK="1")
        assert res.returncode == 1 and "DO_NOT_TRACK is set" in res.stdout
        res = run_cli(home, "flush", "--app", "acme", ACME_TELEMETRY="0")
        assert "ACME_TELEMETRY is set" in res.stdout
        assert (home / "acme" / "forget.json").exists()
        # an automatic run respects the back-off
        assert run_cli(home, "flush", "--if-due", "--quiet").returncode == 0
        assert (home / "acme" / "forget.json").exists()
        res = run_cli(home, "flush")
        assert res.returncode == 0 and "1 acknowledged" in res.stdout
        assert listing(home / "acme") == {"mode.json"}  # the old id is gone with it
        late = requests.post(
            url, json=rollup2("acme", key, [{"id": new_id(), "day": day(-1), "counts": {"build": 1}}]), timeout=10
        )
        assert late.status_code == 403
    finally:
        stop(server)


def test_a_request_is_given_up_after_30_days(home: Path) -> None:
    with Receiver(status=503) as rec:
        plant(home, "acme", {(day(-1), "build"): 1}, endpoint=rec.url)
        (home / "acme" / "notice").write_text("0")
        (home / "acme" / "machine_id").write_text("6f1c1a4e-7c8e-4d55-9a51-3d1c7c0a8a11\n")
        code, out, _ = main_inproc("off", "--app", "acme")
        assert code == 0 and "kept for a later flush (HTTP 503)" in out
        assert len(rec.bodies) == 1
        store = AppStore(home / "acme")
        res = retry_forget(store, environ={}, now=lambda: time.time() + 600)
        assert res.kept == 1 and len(rec.bodies) == 2
        assert forget_requests(store)[0]["attempts"] == 2
        res = retry_forget(store, environ={}, now=lambda: time.time() + FORGET_MAX_AGE + 1)
        assert res.expired == 1 and len(rec.bodies) == 2
        assert listing(home / "acme") == {"mode.json"}
