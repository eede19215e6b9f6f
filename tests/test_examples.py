"""The three seed rebuilds (examples/*_like, examples/cli_policy) as real processes against a
real receiver on 127.0.0.1: every field the seed's documentation promises arrives in rollup
form, and nothing it says is never collected (arguments, messages, SQL, paths, hostnames,
environment, credentials) is anywhere on disk or on the wire, checked with planted markers."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from cli_helpers import notice_shown_yesterday
from receiver import Receiver, wait_for

ROOT = Path(__file__).resolve().parent.parent
CODEGRAPH = ROOT / "examples" / "codegraph_like" / "codegraph.py"
ALTIMATE = ROOT / "examples" / "altimate_like" / "altimate.py"
YOURCLI = ROOT / "examples" / "cli_policy" / "yourcli.py"


def marker() -> str:
    return f"zq{uuid.uuid4().hex[:12]}"


def run(script: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=30, env=full, check=False, **kw
    )


def assert_clean(home: Path, receiver: Receiver, markers: list[str]) -> None:
    """No marker in any file under the data root, in any body, or in a non-auth request header."""
    disk = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    wire = b"".join(receiver.bodies)
    headers = json.dumps(
        [{k: v for k, v in h.items() if k.lower() != "authorization"} for h in receiver.request_headers]
    )
    host = socket.gethostname()
    for m in markers + ([host] if len(host) >= 6 else []):
        assert m.encode() not in disk, m
        assert m.encode() not in wire, m
        assert m not in headers, m


def counts(receiver: Receiver) -> dict[str, int]:
    assert all(n == 1 for n in receiver.deliveries.values())  # exactly once
    return receiver.totals()


def payloads(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(b) for b in receiver.bodies if b"reports" in b]


def assert_payload_facts(receiver: Receiver, app: str, version: str) -> None:
    for p in payloads(receiver):
        assert p["schema"] == 2 and p["app"] == app and p["app_version"] == version
        assert p["os"] and p["arch"] and uuid.UUID(p["machine_id"]).version == 8


def test_codegraph_cli_and_stdio_server(home: Path, receiver: Receiver, tmp_path: Path) -> None:
    m = marker()
    proj = tmp_path / f"src-{m}"
    proj.mkdir()
    (proj / f"{m}_secret.py").write_text(f"API_KEY = '{m}'\n")
    (proj / "b.ts").write_text("export {}\n")
    env = {"CODEGRAPH_TELEMETRY_ENDPOINT": receiver.url, "SECRET_TOKEN": m}

    # Opted out by DO_NOT_TRACK or CODEGRAPH_TELEMETRY=0: not a file is made.
    for off in ({"DO_NOT_TRACK": "1"}, {"CODEGRAPH_TELEMETRY": "0"}):
        r = run(CODEGRAPH, "index", str(proj), env={**env, **off})
        assert r.returncode == 0 and not (home / "codegraph").exists()

    r = run(CODEGRAPH, "index", str(proj), env=env)
    assert r.returncode == 0 and "`codegraph telemetry off`" in r.stderr  # first-run notice
    # What that run counted stays on this machine (counted before the notice); from the next UTC
    # day on, what is counted after it is sent.
    notice_shown_yesterday(home, "codegraph")
    assert run(CODEGRAPH, "index", str(proj), env=env).returncode == 0
    assert run(CODEGRAPH, "query", f"where is {m}", env=env).returncode == 0
    assert run(CODEGRAPH, "install", "--target", "cursor", "--scope", "global", env=env).returncode == 0

    # The stdio server: replies only on stdout, counts after replying, persists on an interval.
    requests_ = [
        {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "claude-code", "version": m}}},
        {"id": 2, "method": "tools/call", "params": {"name": "search", "arguments": {"query": m}}},
        {"id": 3, "method": "tools/call", "params": {"name": "callers", "arguments": {"symbol": f"{m}.fn"}}},
        {"id": 4, "method": "tools/call", "params": {"name": f"tool-{m}"}},
        {"id": 5, "method": "tools/list"},
    ]
    full = {**os.environ, **env, "CODEGRAPH_FLUSH_INTERVAL": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, str(CODEGRAPH), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )
    assert proc.stdin is not None and proc.stdout is not None
    replies = []
    for req in requests_:
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        replies.append(proc.stdout.readline())
    buffer = home / "codegraph" / "buffer.jsonl"
    # The interval flush persists while the server is still running.
    assert wait_for(lambda: buffer.exists() and b"mcp.tool:callers" in buffer.read_bytes(), timeout=10)
    assert proc.poll() is None
    rest, _ = proc.communicate(timeout=20)  # closes stdin: the server's end of input
    assert proc.returncode == 0 and rest == ""
    assert [json.loads(x)["id"] for x in replies] == [1, 2, 3, 4, 5]  # stdout: exactly the protocol lines

    r = run(CODEGRAPH, "telemetry", "flush", "--include-today", env=env)
    assert r.returncode == 0, r.stderr
    got = counts(receiver)
    # Seed 002's usage_rollup/index/install events, as daily counters:
    expected = {
        "command:index": 1,
        "command:query": 1,
        "command:install": 1,
        "command:serve": 1,
        "index.lang:python": 1,
        "index.lang:typescript": 1,
        "index.files:lt10": 1,
        "install.target:cursor": 1,
        "install.scope:global": 1,
        "mcp.client:claude-code": 1,
        "mcp.tool:search": 1,
        "mcp.tool:callers": 1,
        "_run:script": 4,
    }
    assert got == expected
    assert_payload_facts(receiver, "codegraph", "0.9.0")

    r = run(CODEGRAPH, "telemetry", "status", env=env)
    assert r.returncode == 0 and "codegraph" in r.stdout
    r = run(CODEGRAPH, "telemetry", "off", env=env)
    assert r.returncode == 0
    assert {p.name for p in (home / "codegraph").iterdir()} <= {"forget.json", "mode.json"}
    assert any(b'"forget"' in b for b in receiver.bodies)  # the deletion request
    assert run(CODEGRAPH, "index", str(proj), env=env).returncode == 0
    assert not buffer.exists()  # off means off
    assert_clean(home, receiver, [m])


def altimate_expected(c: int) -> dict[str, int]:
    """The day's sums for one ``altimate run --sessions c`` (c even): c scripted sessions + 1 parent."""
    return {
        "session": c + 1,
        "session:ok": c + 1,
        "session.forked": 1,
        "agent.outcome:error": c,
        "agent.outcome:empty": 1,
        "command:init": c,
        "command.source:command": c,
        "generation": 2 * c,
        "generation:ok": 2 * c,
        "generation.model:claude-sonnet-4": c + c // 2,
        "generation.model:gpt-4o": c // 2,
        "generation.tokens_in": sum(100 + n for n in range(c)) + 50 * c,
        "generation.tokens_out": 15 * c,
        "tool_call": 2 * c,
        "tool_call:ok": 2 * c,
        "tool:sql_execute": c,
        "tool:read_file": c,
        "tool.category:warehouse": c,
        "tool.category:fs": c,
        "error": c,
        "error:error": c,
        "error:error:ValueError": c,
    }


def test_altimate_concurrent_sessions_two_tier(home: Path, receiver: Receiver) -> None:
    m = marker()
    args = ["--prompt", f"explain {m}", "--sql", f"select * from db-{m}.corp.orders", "--path", f"/home/{m}/x.sql"]
    anon = {"ALTIMATE_TELEMETRY_URL": receiver.url, "WAREHOUSE_PASSWORD": m}

    # No account and no URL, or disabled: not configured at all, no file, no request.
    for env in ({}, {**anon, "ALTIMATE_TELEMETRY_DISABLED": "true"}):
        r = run(ALTIMATE, "run", "--sessions", "4", *args, env=env)
        assert r.returncode == 0 and not (home / "altimate").exists()

    r = run(ALTIMATE, "run", "--sessions", "4", *args, env=anon)
    assert r.returncode == 0 and "altimate collects" in r.stderr
    assert receiver.bodies == []  # nothing before the user could say no
    notice_shown_yesterday(home, "altimate")  # the notice's UTC day is over: sends may go
    r = run(ALTIMATE, "run", "--sessions", "4", *args, env=anon)  # counted after the notice: sent
    assert r.returncode == 0 and r.stderr == ""

    # Signed in: the bearer token goes in the header of this process's own send; a 401 keeps all.
    signed = {**anon, "ALTIMATE_TOKEN": f"tok-{m}"}
    receiver.behaviour, receiver.status = "status", 401
    r = run(ALTIMATE, "run", "--sessions", "6", "--send-today", *args, env=signed)
    assert r.returncode == 0, r.stderr
    assert receiver.request_headers and receiver.request_headers[-1]["Authorization"] == f"Bearer tok-{m}"
    state = json.loads((home / "altimate" / "state.json").read_text())
    assert state["totals"]["reports_rejected"] == 0 and state["last_attempt"]["kept"] >= 1

    # The anonymous path (a detached or explicit flush has no token) delivers them, once.
    receiver.behaviour = "ok"
    r = run(ALTIMATE, "telemetry", "flush", "--include-today", env=anon)
    assert r.returncode == 0, r.stderr
    assert "Authorization" not in receiver.request_headers[-1]
    got = counts(receiver)
    want = {k: altimate_expected(4)[k] + altimate_expected(6)[k] for k in altimate_expected(4)}
    durs = {k: v for k, v in got.items() if ":dur:" in k}
    assert sum(v for k, v in durs.items() if k.startswith("session:dur:")) == want["session"]
    assert sum(v for k, v in durs.items() if k.startswith("generation:dur:")) == want["generation"]
    assert sum(v for k, v in durs.items() if k.startswith("tool_call:dur:")) == want["tool_call"]
    assert {k: v for k, v in got.items() if ":dur:" not in k} == {**want, "_run:script": 2}
    assert_payload_facts(receiver, "altimate", "0.5.0")
    assert_clean(home, receiver, [m])


def test_cli_policy(home: Path, receiver: Receiver) -> None:
    m = marker()
    env = {"YOURCLI_TELEMETRY_ENDPOINT": receiver.url, "API_KEY": m}
    r = run(YOURCLI, "build", env=env)
    assert r.returncode == 0 and "yourcli collects anonymous usage data" in r.stderr  # the first-run notice
    notice_shown_yesterday(home, "yourcli")  # that run's counts stay here; the next UTC day, later ones go
    assert run(YOURCLI, "build", env=env).returncode == 0
    r = run(YOURCLI, "build", "--manifest", f"/home/{m}/app.json", env=env)
    assert r.returncode == 1 and m in r.stderr and "yourcli collects" not in r.stderr  # notice once only
    assert run(YOURCLI, "deploy", f"prod-{m}", env=env).returncode == 1
    assert run(YOURCLI, "deploy", f"staging-{m}", "--yes", env=env).returncode == 0
    assert run(YOURCLI, "build", env={**env, "YOURCLI_TELEMETRY_OPT_OUT": "1"}).returncode == 0  # not counted

    # One run in an interactive terminal.
    master, slave = pty.openpty()
    try:
        tty = subprocess.run(
            [sys.executable, str(YOURCLI), "build"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**os.environ, **env},
            timeout=30,
            check=False,
        )
        assert tty.returncode == 0
    finally:
        os.close(slave)
        os.close(master)

    assert run(YOURCLI, "telemetry", "flush", "--include-today", env=env).returncode == 0
    got = counts(receiver)
    durs = {k: v for k, v in got.items() if ":dur:" in k}
    assert sum(v for k, v in durs.items() if k.startswith("cmd:build:dur:")) == 3
    assert sum(v for k, v in durs.items() if k.startswith("cmd:deploy:dur:")) == 2
    assert {k: v for k, v in got.items() if ":dur:" not in k} == {
        "cmd:build": 3,  # command
        "cmd:build:ok": 2,  # status
        "cmd:build:error": 1,
        "cmd:build:error:invalid_manifest": 1,  # sanitized error code
        "cmd:deploy": 2,
        "cmd:deploy:ok": 1,
        "cmd:deploy:error": 1,
        "cmd:deploy:error:confirmation_required": 1,
        "_run:script": 4,  # is_interactive: false
        "_run:tty": 1,  # is_interactive: true
    }
    assert_payload_facts(receiver, "yourcli", "0.2.1")  # event_version, cli_version, os_arch, installation_id

    r = run(YOURCLI, "telemetry", "disable", env=env)
    assert r.returncode == 0 and "telemetry is off" in r.stdout
    assert {p.name for p in (home / "yourcli").iterdir()} <= {"forget.json", "mode.json"}
    assert run(YOURCLI, "build", env=env).returncode == 0
    assert not (home / "yourcli" / "buffer.jsonl").exists()
    r = run(YOURCLI, "telemetry", "enable", env=env)
    assert r.returncode == 0 and "telemetry is on" in r.stdout
    assert_clean(home, receiver, [m])


def test_cli_policy_against_the_reference_server(home: Path, tmp_path: Path) -> None:
    """The same tool against ``python -m telemetry_rollup.server``: what it stores is what was promised."""
    sys.path.insert(0, str(Path(__file__).parent / "server"))
    from server_helpers import Server, report_json

    server = Server(f"sqlite:///{tmp_path / 'ref.db'}", tmp_path)
    try:
        env = {"YOURCLI_TELEMETRY_ENDPOINT": server.url + "/v1/rollups"}
        assert run(YOURCLI, "build", env=env).returncode == 0  # the notice: these counts stay here
        notice_shown_yesterday(home, "yourcli")
        assert run(YOURCLI, "build", env=env).returncode == 0
        assert run(YOURCLI, "build", "--manifest", "x.json", env=env).returncode == 1
        r = run(YOURCLI, "telemetry", "flush", "--include-today", env=env)
        assert r.returncode == 0, r.stderr
        rows = {row["name"]: row["total"] for row in report_json(server, "yourcli")["counts"]}
        assert {k: v for k, v in rows.items() if ":dur:" not in k} == {
            "cmd:build": 2,
            "cmd:build:ok": 1,
            "cmd:build:error": 1,
            "cmd:build:error:invalid_manifest": 1,
            "_run:script": 2,
        }
    finally:
        server.stop()
