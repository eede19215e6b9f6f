"""docs/server.md against what the server commands do (issue 18, items 14-18): install commands,
install hints, the example config, a missing database directory, SIGTERM, the report's filters,
formats and wording, the dashboard's credentials rule, and the ``--help`` texts.

Each test runs the real commands (``python -m telemetry_rollup ...``) and compares their output
and exit codes with what the docs say.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import Server, day, free_port, new_id, rollup2, run_cli

from telemetry_rollup._counters import Counters
from telemetry_rollup._names import DENIED
from telemetry_rollup.server.config import AppRule

ROOT = Path(__file__).resolve().parents[2]
SERVER_MD = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")


def run_main(*args: str, block: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m telemetry_rollup ARGS`` as a user runs it; ``block`` makes modules missing
    (``sys.modules[name] = None`` is what the import system answers for an absent package)."""
    code = (
        f"import sys\nfor m in {block!r}: sys.modules[m] = None\n"
        "from telemetry_rollup import cli\nraise SystemExit(cli.main())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- item 14: the install command from a checkout first ---------------------------------------


def test_install_commands_show_the_checkout_form_first() -> None:
    installs = [line.strip() for line in SERVER_MD.splitlines() if re.match(r"\s*pip install ", line)]
    assert installs, "docs/server.md shows no install command"
    assert re.match(r"pip install (-e )?'\.\[", installs[0]), installs[0]
    for line in installs:
        if "telemetry-rollup[" in line:  # the index form
            assert "once published" in line, line


# -- item 15: a missing PostgreSQL driver names the [postgres] extra -------------------------


@pytest.mark.parametrize("command", ["serve", "report", "export", "prune"])
def test_a_missing_postgres_driver_names_the_postgres_extra(command: str) -> None:
    args = [command, "--db", f"postgresql://u:pw@127.0.0.1:{free_port()}/db"]
    if command == "export":
        args += ["--otlp", f"http://127.0.0.1:{free_port()}"]
    if command == "prune":  # it used to end in a traceback here
        args += ["--older-than", "400"]
    line = one_line(run_main(*args, block=("psycopg",)), 2)
    assert "[postgres]" in line and "psycopg" in line
    assert "pw@" not in line


def test_a_missing_server_extra_names_the_server_extra() -> None:
    line = one_line(run_main("serve", "--port", "0", block=("uvicorn",)), 2)
    assert "[server]" in line


# -- item 16: the example config lets timed()'s counters through, as the client does ---------


def _example_config() -> dict[str, Any]:
    if sys.version_info < (3, 11):
        pytest.skip("the example config is TOML (tomllib: Python 3.11+)")
    import tomllib

    blocks = re.findall(r"```toml\n(.*?)```", SERVER_MD, flags=re.S)
    (block,) = [b for b in blocks if "[apps.acme]" in b]
    return tomllib.loads(block)


def test_the_example_config_accepts_timed_counters(tmp_path: Path) -> None:
    config = _example_config()
    assert "build" in config["apps"]["acme"]["counters"]
    server = Server(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, config=config)
    counts = {
        "build": 5,
        "build:ok": 3,
        "build:error": 2,
        "build:error:E42": 2,
        "build:dur:lt1s": 4,
        "build:dur:ge1m": 1,
        "cmd.run:ok": 1,
        "_run:tty": 1,
        "deploy": 1,  # not listed
        "deploy:ok": 1,  # follows deploy
    }
    try:
        answer = server.post(rollup2("acme", reports=[{"id": new_id(), "day": day(-1), "counts": counts}])).json()
        assert answer == {"stored": 1, "duplicates": 0, "refused": 2}
        report = json.loads(server.report("--app", "acme", "--format", "json").stdout)
    finally:
        server.stop()
    stored = {r["name"]: r["total"] for r in report["counts"]}
    assert stored == {k: v for k, v in counts.items() if not k.startswith("deploy")}


_PATTERN = st.sampled_from(["build", "cmd.*", "_*", "b*", "cmd:x", "*:ok", "lint"])
_PART = st.sampled_from(["build", "cmd.run", "cmd", "lint", "x", "ok", "error", "dur", "lt1s", "E42", "_run"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATTERN, max_size=3), st.lists(_PART, min_size=1, max_size=4))
def test_one_allowlist_rule_on_both_sides(patterns: list[str], parts: list[str]) -> None:
    """A name the client counts (rather than folding it into ``_denied``) is one the server
    stores, and the other way round, for the same list."""
    import fnmatch

    name = ":".join(parts)
    if name.startswith("_"):
        return  # reserved names: the client's own, never checked against the list there
    counters = Counters()
    counters.allow = lambda n: any(fnmatch.fnmatchcase(n, p) for p in patterns)
    counters.count(name)
    client_kept = DENIED not in {key for (_, key) in counters.take()}
    assert AppRule(counters=tuple(patterns)).allows_counter(name) == client_kept


# -- item 17: serve refuses a missing database directory -------------------------------------


def test_serve_refuses_a_missing_database_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = run_main("serve", "--db", f"sqlite:///{missing / 'x.db'}", "--port", str(free_port()), timeout=30)
    line = one_line(result, 1)
    assert str(missing) in line
    assert not (tmp_path / "nonexistent").exists()


# -- item 18: SIGTERM, the report's filters and formats, wording, --help ----------------------


def _serve_with_signals_restored(db: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    """``serve`` as a terminal starts it: SIGINT not ignored (a runner in the background of a
    non-interactive shell would pass it on ignored), in a session of its own."""
    port = free_port()
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
        " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    args = ["-m", "telemetry_rollup", "serve", "--db", f"sqlite:///{db}", "--port", str(port)]
    args += ["--workers", str(workers)]
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *args], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"server did not start: {proc.communicate()[1]}")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_as_documented(tmp_path: Path, workers: int, sig: int) -> None:
    """docs/server.md: after a graceful shutdown the process ends by the signal itself, whatever
    ``--workers`` says, with no traceback; only the supervising process is signalled, as
    ``kill PID`` does, and its workers end too."""
    assert "the exit status is that of SIGTERM" in SERVER_MD
    proc, url = _serve_with_signals_restored(tmp_path / "s.db", workers)
    os.kill(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -sig, err
    assert "Traceback" not in err and err.strip() == f"telemetry-rollup server listening on {url}", err
    deadline = time.monotonic() + 10
    while True:  # its workers are gone too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived the server"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A stopped server's database: acme on three days, with timed() counters on one."""
    directory = tmp_path_factory.mktemp("filled")
    server = Server(f"sqlite:///{directory / 'f.db'}", directory)
    reports = [
        {"id": new_id(), "day": day(-3), "counts": {"build": 1, "lint": 2}},
        {"id": new_id(), "day": day(-2), "counts": {"build": 10, "build:ok": 3, "build:error": 2, "lint": 20}},
        {"id": new_id(), "day": day(-1), "counts": {"build": 100, "lint": 200}},
    ]
    try:
        assert server.post(rollup2("acme", reports=reports)).json()["stored"] == 3
    finally:
        server.stop()
    return server


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "html"])
@pytest.mark.parametrize("args", [["--since", "2026-13-01"], ["--until", "yesterday"], ["--since", "1999-12-31"]])
def test_report_bad_dates_are_errors_in_every_format(filled: Server, fmt: str, args: list[str]) -> None:
    line = one_line(filled.report("--format", fmt, *args), 2)
    assert args[0].lstrip("-") in line
    assert "YYYY-MM-DD" in line or "2000-01-01" in line


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "html"])
def test_report_filters_apply_to_every_format(filled: Server, fmt: str) -> None:
    def shown(*args: str) -> str:
        result = filled.report("--app", "acme", "--format", fmt, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    only_one_day = shown("--since", day(-2), "--until", day(-2))
    assert day(-2) in only_one_day and day(-1) not in only_one_day.replace(f"{day(-2)} .. {day(-2)}", "")
    assert day(-3) not in only_one_day
    build_only = shown("--name", "build", "--since", day(-3))
    assert "lint" not in build_only and "build" in build_only
    if fmt == "json":
        data = json.loads(build_only)
        assert {(r["day"], r["name"]) for r in data["counts"]} == {
            (day(-3), "build"),
            (day(-2), "build"),
            (day(-2), "build:ok"),
            (day(-2), "build:error"),
            (day(-1), "build"),
        }
        assert [(r["name"], r["calls"], r["ok"], r["errors"]) for r in data["outcomes"]] == [("build", 111, 3, 2)]
        assert data["name"] == "build" and data["since"] == day(-3)


def test_report_json_keys_are_the_documented_ones(filled: Server) -> None:
    sentence = re.search(r"JSON has the keys (.*?);", SERVER_MD, flags=re.S)
    assert sentence is not None
    top = re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", sentence.group(1)))
    inner = dict(re.findall(r"`([a-z_]+)` \(([^)]*)\)", sentence.group(1)))
    data = json.loads(filled.report("--format", "json").stdout)
    assert sorted(top) == sorted(data)
    assert sorted(re.findall(r"`([a-z_]+)`", inner["machines"])) == sorted(data["machines"])
    (operation,) = data["outcomes"]
    assert sorted(re.findall(r"`([a-z_]+)`", inner["outcomes"])) == sorted(operation)


def test_report_outcome_line_reads_right(filled: Server) -> None:
    table = filled.report("--app", "acme", "--since", day(-2), "--until", day(-2)).stdout
    (line,) = [line for line in table.splitlines() if line.startswith("  acme build:")]
    # 10 calls of build, 5 of them with an outcome: 3 ok and 2 errors, so 40 % of those failed.
    assert line == "  acme build: 10 calls; 5 with an outcome: 3 ok, 2 errors (40.0%); top codes: -"
    assert "calls; N with an outcome" in SERVER_MD


def test_dashboard_credentials_minimum_is_documented_and_named(tmp_path: Path) -> None:
    assert re.search(r"at least 8 characters", SERVER_MD)
    for section, field in (
        ({"token": "short"}, "dashboard.token"),
        ({"user": "ops", "password": "short"}, "dashboard.password"),
        ({"user": "", "password": "long-enough"}, "dashboard.user"),
    ):
        config = tmp_path / "c.json"
        config.write_text(json.dumps({"dashboard": section}))
        line = one_line(run_cli("serve", "--db", f"sqlite:///{tmp_path / 'd.db'}", "--config", str(config)), 2)
        assert field in line
        if field != "dashboard.user":
            assert "at least 8 characters" in line
        else:
            assert "empty" in line


def _options(help_text: str) -> dict[str, str]:
    """Each option of an argparse help text -> its help (continuation lines joined)."""
    out: dict[str, str] = {}
    current = ""
    # "options:" since Python 3.10, "optional arguments:" before.
    for line in re.split(r"^(?:optional arguments|options):$", help_text, maxsplit=1, flags=re.M)[1].splitlines():
        match = re.match(r"\s{2}(-[^\s,]+(?:, --\S+)?)(?: \S+)?(?:\s{2,}(.*))?$", line)
        if match and line.startswith("  -"):
            current = match.group(1).split(", ")[-1]
            out[current] = match.group(2) or ""
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


@pytest.mark.parametrize("command", ["serve", "report", "export"])
def test_help_names_the_command_and_documents_every_option(command: str) -> None:
    result = run_main(command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"usage: python -m telemetry_rollup {command} "), text.splitlines()[0]
    options = _options(text)
    assert len(options) >= 4, text
    for option, help_line in options.items():
        if option == "--help":
            continue
        assert help_line, f"{option} has no help line"
        assert "default" in help_line or "required" in help_line or option == "--version", f"{option}: {help_line}"


def test_demo_help_is_plain_text() -> None:
    result = run_main("demo", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m telemetry_rollup demo")
    assert "``" not in result.stdout and ":func:" not in result.stdout
