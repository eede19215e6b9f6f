"""The app-name rule: one directory name that is safe on Windows, macOS and Linux alike, and one
environment variable per app that a POSIX shell can set (issue 12.12, 18.13)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import main_inproc, plant, run_cli
from helpers import run_py
from hypothesis import example, given
from hypothesis import strategies as st

from telemetry_rollup._names import APP_PATTERN, WINDOWS_DEVICE_NAMES, env_prefix_for, is_app_name, is_env_prefix

APP_RE = re.compile(APP_PATTERN[1:-1])
POSIX_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

REFUSED = [
    "acme:x",  # an NTFS alternate data stream
    "CON",
    "con",
    "NUL",
    "aux",
    "prn",
    "com1",
    "COM9",
    "lpt1",
    "Lpt9",
    "com0",
    "acme.",  # Windows drops a trailing dot: two apps, one directory
    "Acme",  # differs from "acme" only in case: one directory on macOS and Windows
    "9tool",  # 9TOOL_TELEMETRY cannot be set by a POSIX shell
    "acme.cli",  # would share ACME_CLI_TELEMETRY with acme-cli
    "acme_cli",  # likewise
    "-acme",  # looks like an option on a command line
    "",
    "a" * 65,
    "ac me",
    "straße",
]
ACCEPTED = ["acme", "acme-cli", "a", "tool9", "console", "com10", "lpt", "nul-tool", "x" * 64, "a--b"]

near = st.text(alphabet=st.sampled_from("acmonulptAC019-_.: \x00é"), max_size=8)


@pytest.mark.parametrize("name", REFUSED)
def test_refused_names(name: str) -> None:
    assert not is_app_name(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names(name: str) -> None:
    assert is_app_name(name)


@given(st.one_of(near, st.text(max_size=70)))
@example("com1")
@example("a" * 64)
@example("a" * 65)
def test_is_app_name_is_the_pattern_minus_device_names(name: str) -> None:
    assert is_app_name(name) == (APP_RE.fullmatch(name) is not None and name not in WINDOWS_DEVICE_NAMES)


def test_device_names_are_the_windows_list() -> None:
    assert {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)} == set(
        WINDOWS_DEVICE_NAMES
    )


app_names = st.from_regex(APP_RE, fullmatch=True).filter(is_app_name)


@given(app_names, app_names)
def test_two_apps_never_share_a_directory_or_a_variable(a: str, b: str) -> None:
    if a != b:
        assert a.casefold() != b.casefold()  # one directory each, even on a case-insensitive disk
        assert env_prefix_for(a) != env_prefix_for(b)  # one variable each
    assert POSIX_VAR.fullmatch(f"{env_prefix_for(a)}_TELEMETRY")
    assert not a.endswith(".") and ":" not in a


@given(app_names)
def test_the_server_accepts_every_name_a_client_can_send(name: str) -> None:
    models = pytest.importorskip("telemetry_rollup.server.models")
    body = {
        "schema": 1,
        "app": name,
        "app_version": None,
        "lib_version": "0.1.0",
        "machine_id": "0f8b6e5a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
        "os": "linux",
        "arch": "x86_64",
        "python": "3.12",
        "ci": False,
        "reports": [{"id": "1f8b6e5a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "day": "2026-11-21", "counts": {"a": 1}}],
    }
    models.RollupRequest.model_validate(body)


@pytest.mark.parametrize("prefix", ["ACME", "ACME_CLI", "_ACME", "acme", "A1"])
def test_valid_env_prefixes(prefix: str) -> None:
    assert is_env_prefix(prefix)


@pytest.mark.parametrize("prefix", ["9ACME", "ACME-CLI", "ACME.CLI", "", "A B", "ÄCME", "A" * 65, "X=Y"])
def test_invalid_env_prefixes(prefix: str) -> None:
    assert not is_env_prefix(prefix)


@pytest.mark.parametrize(("app", "options"), [*((n, "") for n in REFUSED), ("acme", ", env_prefix='9ACME'")])
def test_configure_with_a_bad_name_is_off_and_creates_nothing(home: Path, app: str, options: str) -> None:
    proc = run_py(
        f"import threading, telemetry_rollup as tr; tr.configure({app!r}{options}); tr.count('x'); tr.flush();"
        " print(tr._default.mode, threading.active_count())",
        env={"TELEMETRY_ROLLUP_DEBUG": "1"},
    )
    assert proc.stdout.split() == ["off", "1"]
    assert not home.exists()
    # one clear debug line saying why, and nothing else
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "telemetry is off" in lines[0], proc.stderr
    assert ("env_prefix" if options else "app name") in lines[0]


@pytest.mark.parametrize("name", ["CON", "Acme", "9tool", "acme.cli", "a:b"])
def test_cli_refuses_a_bad_app_with_one_usage_line(home: Path, name: str) -> None:
    for command in (["on", "--app", name], ["status", "--app", name], ["show", "--app", name], ["off", "--app", name]):
        res = run_cli(home, *command)
        assert res.returncode == 2 and res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "invalid app name" in lines[0] and "lowercase" in lines[0], res.stderr
    assert not home.exists()


def test_status_lists_only_valid_app_names(home: Path) -> None:
    plant(home, "acme", {("2026-01-01", "build"): 1})
    for odd in ("Acme2", "con", "a:b", "x.y", "9tool", "acme_cli", ".hidden"):
        (home / odd).mkdir()
        (home / odd / "config.json").write_text(json.dumps({"app": odd}))
    (home / "not-a-dir").write_text("x")
    res = run_cli(home, "status", "--json")
    assert [a["app"] for a in json.loads(res.stdout)["apps"]] == ["acme"]
    assert "Acme2" not in run_cli(home, "status").stdout
    # nor does off --all touch what is not an app's directory
    assert run_cli(home, "off", "--all", "--keep-remote").returncode == 0
    assert (home / "con" / "config.json").exists()
    assert not (home / "acme" / "config.json").exists()


def test_an_app_tool_with_a_bad_name_gets_a_usage_error(home: Path) -> None:
    code, out, err = main_inproc("status", app="Acme")
    assert code == 2 and out == "" and "invalid app name" in err
