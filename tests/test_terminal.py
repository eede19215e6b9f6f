"""What the command line prints cannot drive the terminal (issue 12.8): values read from disk,
config files or the environment have their control characters escaped, everywhere."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest
from cli_helpers import day, main_inproc, plant, run_cli

from telemetry_rollup._format import printable

ESC = "\x1b]0;pwned\x07\x1b[31m\x9b2J\u202e\u2028\x00"  # retitle, recolour (C0 and C1), bidi, LS, NUL


def terminal_safe(text: str) -> bool:
    for ch in text:
        if ch == "\n":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Zl", "Zp"):
            return False
    return True


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest() -> None:
    assert printable("build 42 ██▌ é ✓\n") == "build 42 ██▌ é ✓\n"
    assert printable("a\x1b[31mb") == "a\\u001b[31mb"
    assert printable("\x9b\u202e\u2028\t\r\x7f") == "\\u009b\\u202e\\u2028\\u0009\\u000d\\u007f"
    assert printable("\U000e0001") == "\\udb40\\udc01"  # a JSON-valid escape, even outside the BMP
    # escaping a JSON text keeps it JSON with the same value
    raw = json.dumps({"v": "x\x9by\u202e"}, ensure_ascii=False)
    assert json.loads(printable(raw)) == {"v": "x\x9by\u202e"}
    assert terminal_safe(printable(ESC))


@pytest.fixture
def hostile_home(tmp_path: Path) -> Path:
    home = tmp_path / f"root{ESC.replace(chr(0), '')}"
    d = plant(home, "acme", {(day(-1), "build"): 3}, app_version=f"1.0{ESC}".replace("\x00", ""))
    (d / "notice").write_text("0")
    (d / "machine_id").write_text("0f8b6e5a-2c3d-4e5f-8a9b-0c1d2e3f4a5b\n")
    (d / "mode.json").write_text(json.dumps({"mode": "on", "at": f"2026-11-20T00:00:00Z{ESC}"}))
    state = {
        "last_attempt": {"at": time.time(), "result": f"retry{ESC}", "status": ESC, "detail": ESC, "sent": 0},
        "history": [{"at": time.time(), "result": ESC, "status": ESC, "reports": 1, "days": [ESC], "counts": 1}],
        "totals": {},
    }
    (d / "state.json").write_text(json.dumps(state))
    forget = {"machine_id": f"old{ESC}", "endpoint": "https://example.com/x", "created_at": time.time()}
    forget["last_result"] = ESC
    (d / "forget.json").write_text(json.dumps({"schema": 1, "requests": [forget]}))
    (home / f"evil{ESC}".replace("\x00", "")).mkdir()  # not an app name: never listed
    return home


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["status", "--app", "acme"],
        ["show"],
        ["show", "--raw"],
        ["flush", "--app", "acme", "--timeout", "2"],
        ["on", "--app", "acme"],
        ["reset-id", "--app", "acme"],
        ["off", "--app", "acme", "--keep-remote"],
        ["status", "--app", f"x{ESC}".replace("\x00", "")],  # a usage error quoting the argument
    ],
)
@pytest.mark.parametrize("env_value", ["", f"on{ESC}".replace("\x00", "")])  # status names the value it read
def test_no_command_prints_a_control_character(hostile_home: Path, args: list[str], env_value: str) -> None:
    res = run_cli(hostile_home, *args, ACME_TELEMETRY=env_value, TELEMETRY_ROLLUP_DEBUG="1")
    assert terminal_safe(res.stdout), res.stdout
    assert terminal_safe(res.stderr), res.stderr
    assert res.stdout or res.stderr


def test_show_raw_stays_the_bodies_as_json(hostile_home: Path) -> None:
    res = run_cli(hostile_home, "show", "--raw", "--app", "acme")
    bodies = [json.loads(line) for line in res.stdout.splitlines()]
    assert bodies and bodies[-1]["app_version"] == f"1.0{ESC}".replace("\x00", "")  # same value, escaped form


def test_view_prints_a_safe_path(hostile_home: Path, tmp_path: Path) -> None:
    out = tmp_path / f"page{ESC}.html".replace("\x00", "")
    res = run_cli(hostile_home, "view", "--no-open", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert terminal_safe(res.stdout) and terminal_safe(res.stderr)


def test_the_in_process_cli_escapes_too(hostile_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_ROLLUP_HOME", str(hostile_home))
    code, out, err = main_inproc("status")
    assert code == 0 and terminal_safe(out) and terminal_safe(err)
