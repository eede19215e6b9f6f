"""configure(headers=...): extra request headers (a bearer token), in-process only; a 401 keeps reports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from receiver import Receiver

from telemetry_rollup import Telemetry, cli

TOKEN = "tok-9f3e1c7a-SECRET"


def _files_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def _app(home: Path, url: str, headers: object) -> Telemetry:
    t = Telemetry()
    t.configure("hdr", endpoint=url, home=str(home), flush_interval=0, headers=headers)  # type: ignore[arg-type]
    (home / "hdr").mkdir(parents=True, exist_ok=True)
    (home / "hdr" / "mode.json").write_text('{"mode": "on"}')  # an explicit on: no notice gate
    t.configure("hdr", endpoint=url, home=str(home), flush_interval=0, headers=headers)  # type: ignore[arg-type]
    return t


def test_callable_headers_are_sent_and_never_on_disk_or_shown(home: Path, receiver: Receiver) -> None:
    calls = []

    def headers() -> dict[str, str]:
        calls.append(1)
        return {"Authorization": f"Bearer {TOKEN}"}

    t = _app(home, receiver.url, headers)
    t.count("build", 3)
    t.flush()
    out = io.StringIO()
    assert cli.main(["show", "--app", "hdr", "--include-today"], stdout=out, stderr=io.StringIO()) == 0
    assert TOKEN not in out.getvalue() and "build" in out.getvalue()
    assert calls == []  # evaluated at send time only
    res = t.send(include_today=True)
    assert res.sent == 1 and calls == [1]
    assert receiver.request_headers[-1]["Authorization"] == f"Bearer {TOKEN}"
    assert receiver.totals()["build"] == 3
    assert TOKEN.encode() not in _files_text(home)
    assert json.loads((home / "hdr" / "config.json").read_text())["auth_headers"] is True


def test_401_with_headers_keeps_reports_until_a_valid_token(home: Path, receiver: Receiver) -> None:
    token = {"v": "expired"}
    t = _app(home, receiver.url, lambda: {"Authorization": f"Bearer {token['v']}"})
    t.count("build", 5)
    receiver.behaviour, receiver.status = "status", 401
    res = t.send(include_today=True)
    assert (res.sent, res.kept, res.dropped) == (0, 1, 0)
    receiver.behaviour = "ok"
    token["v"] = "fresh"
    state = json.loads((home / "hdr" / "state.json").read_text())
    assert state["next_attempt_at"] > 0  # backing off, as after any failure
    state["next_attempt_at"] = 0  # the back-off has passed
    (home / "hdr" / "state.json").write_text(json.dumps(state))
    res = t.send(include_today=True)
    assert res.sent == 1
    assert receiver.request_headers[-1]["Authorization"] == "Bearer fresh"
    assert receiver.totals()["build"] == 5
    assert list(receiver.deliveries.values()) == [1]


def test_401_without_headers_is_still_final(home: Path, receiver: Receiver) -> None:
    t = _app(home, receiver.url, None)
    t.count("build")
    receiver.behaviour, receiver.status = "status", 401
    res = t.send(include_today=True)
    assert (res.sent, res.kept, res.dropped) == (0, 0, 1)


def test_detached_flush_has_no_headers_but_keeps_on_401(home: Path, receiver: Receiver) -> None:
    t = _app(home, receiver.url, {"Authorization": f"Bearer {TOKEN}"})
    t.count("build", 2)
    t.flush()
    receiver.behaviour, receiver.status = "status", 401
    flush = [sys.executable, "-m", "telemetry_rollup", "flush", "--app", "hdr", "--include-today"]
    subprocess.run(flush, check=False, timeout=30, capture_output=True)
    assert "Authorization" not in receiver.request_headers[-1]  # another process: anonymous
    assert json.loads((home / "hdr" / "state.json").read_text())["totals"]["reports_rejected"] == 0
    receiver.behaviour = "ok"
    subprocess.run(flush, check=True, timeout=30, capture_output=True)
    assert receiver.totals()["build"] == 2


def test_bad_headers_or_a_failing_callable_send_anonymously(home: Path, receiver: Receiver) -> None:
    def boom() -> dict[str, str]:
        raise RuntimeError(TOKEN)

    for headers in (boom, {"X-Bad": "a\r\nInjected: 1"}, {"Content-Type": "text/plain"}):
        t = _app(home, receiver.url, headers)
        t.count("build")
        assert t.send(include_today=True).sent == 1
        assert "Injected" not in receiver.request_headers[-1]
        assert receiver.request_headers[-1]["Content-Type"] == "application/json"
