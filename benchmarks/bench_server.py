"""The reference server as the server benchmarks run it (``fleet.py``, ``server_load.py``,
``server_abuse.py``): a real ``python -m telemetry_rollup.server`` on a free port of 127.0.0.1,
its own session (so it and its workers are stopped together), its output in a log file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    db_url: str,
    config: dict[str, Any],
    workdir: Path,
    *,
    name: str = "server",
    args: tuple[str, ...] = (),
    start_timeout: float = 30.0,
    stop_timeout: float = 15.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(base URL, process) of a server started with ``config`` and ready (``/healthz`` 200).
    Stopped with SIGTERM on leaving (SIGKILL after ``stop_timeout``)."""
    config_path = workdir / f"{name}-config.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    cmd = [sys.executable, "-m", "telemetry_rollup.server", "--db", db_url, "--port", str(port)]
    cmd += ["--config", str(config_path), *args]
    base = f"http://127.0.0.1:{port}"
    with open(workdir / f"{name}.log", "wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{name}: the server did not start; see {log.name}")
                time.sleep(0.05)
            yield base, server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
