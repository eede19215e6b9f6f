"""``serve`` and ``report`` as processes: exit codes, one-line errors, the report formats."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from server_helpers import Server, day, free_port, new_id, rollup, run_cli, start_server_process


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--nope"],
        ["--db", "mysql://x"],
        ["--db", "sqlite://"],
        ["--port", "70000"],
        ["--port", "x"],
        ["--workers", "0"],
        ["--config", "/nonexistent/config.json"],
    ],
)
def test_serve_usage_errors(args: list[str], tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'x.db'}"] if "--db" not in args else []
    one_line_error(run_cli("serve", *db, *args), 2)


def test_serve_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"apps": {"acme": {"counterz": []}}}')
    line = one_line_error(run_cli("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--config", str(config)), 2)
    assert "counterz" in line


@pytest.mark.parametrize("args", [["--days", "0"], ["--format", "xml"], ["--db", "x.db"], ["extra"]])
def test_report_usage_errors(args: list[str]) -> None:
    one_line_error(run_cli("report", "--db", "sqlite:////nonexistent/x.db", *args), 2)


def test_report_on_a_missing_database_is_a_runtime_error(tmp_path: Path) -> None:
    line = one_line_error(run_cli("report", "--db", f"sqlite:///{tmp_path / 'absent.db'}"), 1)
    assert "no database" in line
    assert not (tmp_path / "absent.db").exists()


def test_serve_on_a_busy_port_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result, 1)


def test_postgres_connection_failure_is_one_line() -> None:
    port = free_port()  # nothing listens there
    line = one_line_error(run_cli("report", "--db", f"postgresql://u:secretpw@127.0.0.1:{port}/db"), 1)
    assert "PostgreSQL" in line
    assert "secretpw" not in line


def test_cli_module_does_not_import_fastapi() -> None:
    code = (
        "import sys, telemetry_rollup.server.cli, telemetry_rollup.server.report;"
        "heavy = ('fastapi', 'uvicorn', 'pydantic', 'starlette', 'psycopg');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_formats(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    try:
        for n in (1, 3):
            reports = [{"id": new_id(), "day": day(-1), "counts": {"build": 10 * n, "lint": n}}]
            assert server.post(rollup("acme", reports=reports, os=f"os{n}")).status_code == 200
        assert server.post(rollup("other")).status_code == 200
        machine = new_id()
        server.post(rollup("acme", machine))
        assert server.post({"schema": 1, "app": "acme", "machine_id": machine, "forget": True}).ok
    finally:
        server.stop()
    table = server.report("--app", "acme")
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    lines = table.stdout.splitlines()
    build = next(line for line in lines if " build " in line)
    assert day(-1) in build and "40" in build and "█" in build
    lint = next(line for line in lines if " lint " in line)
    assert "█" not in lint or len(lint.split()[-1]) < len(build.split()[-1])
    assert "other" not in table.stdout
    assert "Deletion requests honoured" in table.stdout
    data = json.loads(server.report("--app", "acme", "--format", "json").stdout)
    assert {(r["name"], r["total"], r["machines"]) for r in data["counts"]} == {
        ("build", 40, 2),
        ("lint", 4, 2),
    }
    assert data["deletions"] == [{"app": "acme", "day": day(0), "n": 1}]
    assert {r["value"]: r["machines"] for r in data["machines"]["os"]} == {"os1": 1, "os3": 1}
    rows = list(csv.DictReader(io.StringIO(server.report("--format", "csv").stdout)))
    counts = {(r["app"], r["key"]): int(r["value"]) for r in rows if r["section"] == "counts"}
    assert counts == {
        ("acme", "build"): 40,
        ("acme", "lint"): 4,
        ("other", "build"): 30,
        ("other", "lint"): 90,
    }
    assert {r["section"] for r in rows} >= {"counts", "os", "python", "app_version", "deletions"}
    # --days narrows the window: yesterday's counts fall outside a one-day report.
    assert json.loads(server.report("--days", "1", "--format", "json").stdout)["counts"] == []


def test_workers(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, workers=2)
    try:
        body = rollup("acme")
        answers = [server.post(body).json() for _ in range(6)]
        assert sum(a["stored"] for a in answers) == 1
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert f"listening on {server.url}" in server.output()


def test_announces_its_url(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'a.db'}", tmp_path)
    server.stop()
    assert server.output().strip().splitlines()[0] == f"telemetry-rollup server listening on {server.url}"
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (its choice).
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert (tmp_path / "a.db").exists()


def test_start_server_process_helper(tmp_path: Path) -> None:
    proc = start_server_process(f"sqlite:///{tmp_path / 'h.db'}", host="127.0.0.1")
    try:
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://user:{SECRET}@db.example/telemetry",
        f"mysql://root:{SECRET}@127.0.0.1/x",
        f"sqlite://user:{SECRET}@host/x.db",
        f"user:{SECRET}@db/telemetry",
        f"postgres+asyncpg://u:{SECRET}@h:5432/d?sslmode=require",
    ],
)
@pytest.mark.parametrize("command", ["serve", "report"])
def test_an_unsupported_db_url_never_echoes_its_password(command: str, url: str) -> None:
    line = one_line_error(run_cli(command, "--db", url), 2)
    assert SECRET not in line
    assert "sqlite:///" in line  # says what is supported


@pytest.mark.parametrize("args", [["--until", "0001-01-01"], ["--since", "0001-01-01"], ["--until", "2000-01-10"]])
def test_report_dates_out_of_range_are_one_line(tmp_path: Path, args: list[str]) -> None:
    server = Server(f"sqlite:///{tmp_path / 'd.db'}", tmp_path)
    try:
        line = one_line_error(server.report("--format", "html", *args), 2)
        assert "2000-01-01" in line
    finally:
        server.stop()


def _schema_version(db: Path) -> str:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def test_report_opens_the_database_read_only_and_migrates_nothing(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    from telemetry_rollup.server.schema import MIGRATIONS, SCHEMA_VERSION

    if shutil.which("unshare") is None or shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare and mount for a read-only bind mount")
    # The server's directory as report sees it: the same files, on a read-only mount (root
    # can write any file, but not through a read-only mount). Checked with the server running
    # (its -wal and -shm files exist) and after it stopped (they are gone).
    data = tmp_path / "data"
    data.mkdir()
    script = (
        f"mount --bind {data} {data} && mount -o remount,bind,ro {data} && "
        f"{sys.executable} -m telemetry_rollup.server.cli report --db sqlite:///{data / 't.db'} --format json"
    )

    def report_read_only() -> set[str]:
        ro = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
        assert ro.returncode == 0, ro.stderr
        return {r["name"] for r in json.loads(ro.stdout)["counts"]}

    server = Server(f"sqlite:///{data / 't.db'}", tmp_path)
    try:
        assert server.post(rollup("acme")).json()["stored"] == 1
        assert report_read_only() == {"build", "lint"}
    finally:
        server.stop()
    assert report_read_only() == {"build", "lint"}

    # A database of an older schema is not migrated by report: one line, the file unchanged.
    old = tmp_path / "v1.db"
    with sqlite3.connect(old) as conn:
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    before = old.read_bytes()
    line = one_line_error(run_cli("report", "--db", f"sqlite:///{old}"), 1)
    assert "older" in line and "serve" in line
    assert old.read_bytes() == before and _schema_version(old) == "1"
    assert SCHEMA_VERSION > 1
