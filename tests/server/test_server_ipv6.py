"""IPv6 clients are rate-limited per /64, over real IPv6 sockets to a real server process.

A host usually gets a whole /64 and can send from any address in it, so a limit per address
would let one machine be 2^64 clients. The test needs several addresses of one /64 and one
of another: it runs in a network namespace of its own (``unshare -n``, root), where it adds
them to the loopback device; nothing outside the namespace is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import http.client, json, os, subprocess, sys, time, uuid
from datetime import datetime, timedelta, timezone

for cmd in (["ip", "link", "set", "lo", "up"],
            *[["ip", "-6", "addr", "add", a + "/128", "dev", "lo", "nodad"]
              for a in ("fd00:1::1", "fd00:1::2", "fd00:1::3", "fd00:1:0:1::1")]):
    subprocess.run(cmd, check=True)
workdir = sys.argv[1]
config = os.path.join(workdir, "v6.json")
with open(config, "w") as f:
    json.dump({"limits": {"per_machine": 1000, "per_address": 3}}, f)
server = subprocess.Popen(
    [sys.executable, "-m", "telemetry_rollup.server", "--db", "sqlite:///" + os.path.join(workdir, "v6.db"),
     "--host", "fd00:1::1", "--port", "8787", "--config", config],
    stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "v6.err"), "wb"))

def post(source):
    day = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    body = json.dumps({"schema": 1, "app": "acme", "app_version": "1.0", "lib_version": "0.1.0",
                       "machine_id": str(uuid.uuid4()), "os": "linux", "arch": "x86_64", "python": "3.11",
                       "ci": False, "reports": [{"id": str(uuid.uuid4()), "day": day, "counts": {"x": 1}}]})
    conn = http.client.HTTPConnection("fd00:1::1", 8787, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/v1/rollups", body, {"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()

try:
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("fd00:1::1", 8787, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.1)
    out = {
        "first": [post("fd00:1::2") for _ in range(4)],
        "same_64": post("fd00:1::3"),
        "other_64": post("fd00:1:0:1::1"),
    }
    print(json.dumps(out))
finally:
    server.terminate()
    server.wait(timeout=20)
"""


def test_ipv6_clients_are_limited_per_64(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip (iproute2) for a network namespace with IPv6 addresses")
    script = tmp_path / "v6.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        ["unshare", "-n", sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"no network namespace here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr + (tmp_path / "v6.err").read_text(errors="replace")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["first"] == [200, 200, 200, 429]
    assert out["same_64"] == 429  # another address of the same /64 shares its budget
    assert out["other_64"] == 200
