"""Helpers for the server tests: free ports, a real server subprocess, request bodies."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def today() -> date:
    return datetime.now(timezone.utc).date()


def day(offset: int = -1) -> str:
    return (today() + timedelta(days=offset)).isoformat()


def new_id() -> str:
    return str(uuid.uuid4())


def rollup(app: str, machine_id: str | None = None, reports: Any = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": 1,
        "app": app,
        "app_version": "1.4.0",
        "lib_version": "0.1.0",
        "machine_id": machine_id or new_id(),
        "os": "linux",
        "arch": "x86_64",
        "python": "3.11",
        "ci": False,
        "reports": reports
        if reports is not None
        else [{"id": new_id(), "day": day(-1), "counts": {"build": 30, "lint": 90}}],
    }
    body.update(fields)
    return body


def forget(app: str, machine_id: str) -> dict[str, Any]:
    return {"schema": 1, "app": app, "machine_id": machine_id, "forget": True}


def new_key() -> str:
    """A machine's secret key, as the library makes it."""
    return os.urandom(32).hex()


def rollup2(app: str, key: str | None = None, reports: Any = None, **fields: Any) -> dict[str, Any]:
    """A wire-format-2 body: the machine id derived from ``key``, the key as proof."""
    from telemetry_rollup._identity import derive_id

    key = key or new_key()
    body = rollup(app, derive_id(key), reports, **fields)
    body["schema"] = 2
    body["machine_key"] = key
    return body


def forget2(app: str, key: str) -> dict[str, Any]:
    from telemetry_rollup._identity import derive_id

    return {"schema": 2, "app": app, "machine_id": derive_id(key), "machine_key": key, "forget": True}


class Server:
    """A real ``python -m telemetry_rollup.server`` process on 127.0.0.1."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        config: Any = None,
        workers: int = 1,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / f"server-{self.port}.out"
        self.stderr_path = workdir / f"server-{self.port}.err"
        args = [sys.executable, "-m", "telemetry_rollup.server", "--db", db_url]
        args += ["--port", str(self.port)]
        if config is not None:
            config_path = workdir / f"config-{self.port}.json"
            config_path.write_text(json.dumps(config))
            args += ["--config", str(config_path)]
        if workers > 1:
            args += ["--workers", str(workers)]

        if nofile is not None:
            # (soft, hard), as a host with a low `ulimit -n` starts it: set in a tiny launcher
            # that then execs the server (preexec_fn is unsafe in a process with threads).
            launcher = (
                f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, {tuple(nofile)});"
                " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
            )
            args = [sys.executable, "-c", launcher, *args[1:]]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not healthy in {timeout}s: {self.output()}")

    def post(self, body: Any, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + "/v1/rollups", json=body, timeout=10, **kwargs)

    def post_raw(
        self, data: bytes, headers: dict[str, str], source: str = "127.0.0.1"
    ) -> tuple[int, dict[str, str], Any]:
        """Exact bytes and headers (no Content-Length added) from a chosen source address."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(source, 0))
        try:
            conn.putrequest("POST", "/v1/rollups", skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            if "Transfer-Encoding" in headers:
                conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            else:
                conn.send(data)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, dict(resp.getheaders()), json.loads(payload) if payload else None
        finally:
            conn.close()

    def report(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("report", "--db", self.db_url, *args)

    def output(self) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def run_cli(command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry_rollup.server.cli", command, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report_json(server: Server, app: str, days: int = 40) -> dict[str, Any]:
    result = server.report("--app", app, "--days", str(days), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def totals(server: Server, app: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(day, name) -> (total, machines) as the report command prints them."""
    return {(r["day"], r["name"]): (r["total"], r["machines"]) for r in report_json(server, app)["counts"]}


def start_server_process(
    db_url: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    config_path: Path | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Start ``python -m telemetry_rollup.server`` and return once /healthz answers.

    The process runs in its own session (stop it with ``os.killpg(proc.pid, SIGTERM)``);
    its stderr carries the "listening on" line. For the tests' own use see :class:`Server`.
    """
    port = port or free_port()
    args = [sys.executable, "-m", "telemetry_rollup.server", "--db", db_url]
    args += ["--host", host, "--port", str(port)]
    if config_path is not None:
        args += ["--config", str(config_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{host}:{port}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    raise RuntimeError(f"server on {host}:{port} did not become healthy")
