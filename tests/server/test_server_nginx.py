"""The production layout: docs/nginx-telemetry.conf in front of the server, run for real.

Debian's nginx (``apt-get install nginx``; ``.ci/run`` installs it) with the sample file as
operators would install it, only the ports, certificate and temp paths substituted; TLS with
a certificate made here by openssl; the server trusting the proxy's X-Forwarded-For. Skipped,
with the reason, where nginx or openssl is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from server_helpers import Server, free_port, report_json, rollup2

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "nginx-telemetry.conf"
TOKEN = "nginx-dashboard-token"


class _Source(requests.adapters.HTTPAdapter):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def _from(source: str, cert: Path) -> requests.Session:
    session = requests.Session()
    session.mount("https://", _Source(source))
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace verify
    session.verify = str(cert)
    return session


def render(sample: str, *, upstream: int, port: int, cert: Path, key: Path) -> str:
    """The sample with this test's ports and paths; every substitution must apply."""
    out = sample
    for old, new in (
        ("server 127.0.0.1:8787;", f"server 127.0.0.1:{upstream};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("listen [::]:443 ssl;", f"listen [::1]:{port} ssl;"),
        ("/etc/ssl/certs/telemetry.example.org.pem", str(cert)),
        ("/etc/ssl/private/telemetry.example.org.key", str(key)),
    ):
        assert old in out, f"the sample no longer has {old!r}: update this test with it"
        out = out.replace(old, new)
    return out


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Server, str, Path]]:
    nginx, openssl = shutil.which("nginx"), shutil.which("openssl")
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    if openssl is None:
        pytest.skip("openssl is not installed (apt-get install openssl): it makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = {
        "limits": {"per_machine": 1000, "per_address": 3},
        "proxy": {"trusted": ["127.0.0.1"]},
        "dashboard": {"token": TOKEN},
        "metrics": {"token": TOKEN},
    }
    server = Server(f"sqlite:///{tmp_path / 'n.db'}", tmp_path, config=config)
    port = free_port()
    site = tmp_path / "telemetry.conf"
    site.write_text(render(SAMPLE.read_text(), upstream=server.port, port=port, cert=cert, key=key))
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'nginx-error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        "http {\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items()).replace("body_", "client_body_")
        + f"  include {site};\n}}\n"
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(main)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "nginx.out", "wb"),
        start_new_session=True,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/healthz", verify=str(cert), timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp_path / "nginx.out").read_text() + (tmp_path / "nginx-error.log").read_text()
                raise RuntimeError(f"nginx did not start: {log}")
            time.sleep(0.1)
        yield server, base, cert
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        server.stop()


def test_reports_go_through_the_proxy_over_tls_with_their_proof(proxied: tuple[Server, str, Path]) -> None:
    base, cert = proxied[1:]
    session = _from("127.0.0.1", cert)
    resp = session.post(base + "/v1/rollups", json=rollup2("acme"), timeout=10)
    assert resp.status_code == 200 and resp.json()["stored"] == 1
    assert session.get(base + "/dashboard", params={"token": TOKEN}, timeout=10).status_code == 200
    assert session.get(base + "/v1/rollups", timeout=10).status_code == 403  # POST only, at the proxy
    big = json.dumps(rollup2("acme", reports=[{"id": str(i), "day": "x", "counts": {}} for i in range(3000)]))
    assert len(big) > 64 * 1024
    too_big = session.post(base + "/v1/rollups", data=big, headers={"Content-Type": "application/json"}, timeout=10)
    assert too_big.status_code == 413  # refused by nginx before it reaches the server


def test_dashboard_and_metrics_only_from_the_operators_network(proxied: tuple[Server, str, Path]) -> None:
    import warnings

    base, cert = proxied[1:]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert _from("127.0.0.1", cert).get(base + "/metrics", headers=bearer, timeout=10).status_code == 200
    # ::1 is outside the sample's allow lists (127.0.0.0/8, 10.0.0.0/8): denied at the proxy. The
    # test certificate names 127.0.0.1 only, so this one request does not verify it.
    outside = base.replace("127.0.0.1", "[::1]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in ("/metrics", "/dashboard"):
            denied = requests.get(outside + path, headers=bearer, params={"token": TOKEN}, verify=False, timeout=10)
            assert denied.status_code == 403, path
        assert requests.get(outside + "/healthz", verify=False, timeout=10).status_code == 200


def test_the_server_limits_each_real_client_behind_the_proxy(proxied: tuple[Server, str, Path]) -> None:
    # Every request reaches the server from 127.0.0.1; X-Forwarded-For from the trusted proxy
    # names the real client, so the per-address limit (3 here) applies per client.
    base, cert = proxied[1:]
    first, second = _from("127.0.0.2", cert), _from("127.0.0.3", cert)
    answers = [first.post(base + "/v1/rollups", json=rollup2("acme"), timeout=10).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert second.post(base + "/v1/rollups", json=rollup2("acme"), timeout=10).status_code == 200


def test_half_requests_stop_at_the_proxy(proxied: tuple[Server, str, Path]) -> None:
    server, base, cert = proxied
    port = int(base.rsplit(":", 1)[1])
    socks = []
    try:
        for i in range(300):
            s = socket.socket()
            s.bind(("127.0.0.4", 0))
            s.settimeout(2)
            s.connect(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"\x16\x03\x01\x00")  # half a TLS hello
            socks.append(s)
        resp = _from("127.0.0.1", cert).post(base + "/v1/rollups", json=rollup2("acme"), timeout=10)
        assert resp.status_code == 200
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
    assert "Traceback" not in server.output()


def test_the_library_sends_through_the_proxy(proxied: tuple[Server, str, Path], tmp_path: Path) -> None:
    server, base, cert = proxied
    home = tmp_path / "home"
    code = (
        "import telemetry_rollup as tr\n"
        f"tr.configure('acme', endpoint={base + '/v1/rollups'!r})\n"
        "tr.count('build', 3)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_TELEMETRY") and k != "DO_NOT_TRACK"},
        "TELEMETRY_ROLLUP_HOME": str(home),
        "ACME_TELEMETRY": "on",
        "REQUESTS_CA_BUNDLE": str(cert),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True)
    flushed = subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "flush", "--include-today", "--app", "acme"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert flushed.returncode == 0 and "sent 1" in flushed.stdout, flushed.stdout + flushed.stderr
    counts = report_json(server, "acme")["counts"]
    assert sum(r["total"] for r in counts if r["name"] == "build") == 3
