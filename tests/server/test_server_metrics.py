"""``GET /metrics`` (issue 16, item 4): real server processes, real HTTP, and a real Prometheus
(Debian's ``prometheus`` package) scraping the server and answering through its query API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import Server, day, forget2, free_port, new_id, new_key, rollup2

from telemetry_rollup.server.config import ConfigError, MetricsAccess, parse_config
from telemetry_rollup.server.metrics import OTHER_APPS, OUTCOMES, app_label

TOKEN = "scrape-token-0123456789"
CONFIG: dict[str, Any] = {
    "limits": {"per_machine": 3, "per_address": 100_000},
    "apps": {"acme": {"counters": ["build", "lint"]}, "beta": {}},
    "metrics": {"token": TOKEN, "apps": ["gamma"]},
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- pure parts ------------------------------------------------------------------------------


def test_config_section() -> None:
    config = parse_config({"metrics": {"token": TOKEN, "apps": ["x"]}, "apps": {"a": {}}})
    assert config.metrics == MetricsAccess(token=TOKEN, apps=("x",))
    assert config.metrics_apps() == ("a", "x")
    assert parse_config({}).metrics is None
    for bad, field in (
        ({"metrics": {}}, "metrics.token"),
        ({"metrics": {"token": "short"}}, "metrics.token"),
        ({"metrics": {"token": TOKEN, "apps": "acme"}}, "metrics.apps"),
        ({"metrics": {"token": TOKEN, "user": "ops"}}, "metrics"),
    ):
        with pytest.raises(ConfigError, match=field):
            parse_config(bad)


def test_app_labels_are_only_the_named_apps() -> None:
    named = frozenset({"acme"})
    assert app_label("acme", named) == "acme"
    assert app_label("invented-by-a-client", named) == OTHER_APPS
    assert app_label("", named) == OTHER_APPS


# -- a real server -----------------------------------------------------------------------------


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels) -> value; a new connection each time."""
    response = requests.get(url + "/metrics", headers={**AUTH, "Connection": "close", **headers}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def requests_by(samples: dict[Any, float]) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["outcome"], dict(labels)["reason"]): value
        for (name, labels), value in samples.items()
        if name == "telemetry_rollup_requests_total"
    }


def hang_up_mid_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/rollups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 5000\r\n\r\n{"schema": 2'
        )


def send_every_outcome(server: Server) -> tuple[dict[tuple[str, str], int], int]:
    """At least one request per outcome the docs list; returns the requests by outcome that
    /metrics must show, and the sum of acme's counter values stored."""
    key = new_key()
    body = rollup2("acme", key, reports=[{"id": new_id(), "day": day(-1), "counts": {"build": 7, "lint": 5}}])
    assert server.post(body).json() == {"stored": 1, "duplicates": 0, "refused": 0}
    assert server.post(body).json()["duplicates"] == 1
    # per_machine = 3, in each worker's memory: new reports (build 30 + lint 90) until a 429.
    more = 0
    while (status := server.post(rollup2("acme", key)).status_code) == 200:
        more += 1
    assert status == 429 and 1 <= more <= 3 * 2 - 2
    other = rollup2("invented", reports=[{"id": new_id(), "day": day(-1), "counts": {"x": 1}}])
    assert server.post(other).json()["refused"] == 1  # an app outside the allowlist: stored as a tag
    gone = new_key()
    assert server.post(rollup2("beta", gone)).json()["stored"] == 1  # build 30 + lint 90
    assert server.post(forget2("beta", gone)).json() == {"forgotten": True}
    assert server.post(rollup2("beta", gone)).status_code == 403
    assert server.post_raw(b"{", {"Content-Type": "application/json", "Content-Length": "1"})[0] == 400
    assert server.post_raw(b"{}", {"Content-Type": "text/plain", "Content-Length": "2"})[0] == 415
    assert server.post_raw(b"{}", {"Content-Type": "application/json", "Content-Length": "99999"})[0] == 413
    assert server.post_raw(b"{}", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})[0] == 411
    hang_up_mid_body(server.port)
    expected = {(outcome, reason): 0 for outcome, reasons in OUTCOMES.items() for reason in reasons}
    expected.update(
        {
            ("stored", ""): 3 + more,
            ("duplicate", ""): 1,
            ("rate_limited", "machine"): 1,
            ("deletion", ""): 1,
            ("refused", "machine_forgotten"): 1,
            ("refused", "invalid"): 1,
            ("refused", "content_type"): 1,
            ("refused", "too_large"): 1,
            ("refused", "no_length"): 1,
            ("disconnected", ""): 1,
        }
    )
    return expected, 7 + 5 + 120 * more


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'off.db'}", tmp_path, config={"dashboard": {"token": TOKEN}})
    try:
        assert requests.get(server.url + "/metrics", headers=AUTH, timeout=10).status_code == 404
    finally:
        server.stop()


def test_metrics_count_every_outcome_exactly(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, config=CONFIG)
    try:
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        wrong = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer nope-nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        dashboard_style = requests.get(server.url + "/metrics", params={"token": TOKEN}, timeout=10)
        assert dashboard_style.status_code == 401  # only the header: a URL token ends up in logs
        expected, acme_values = send_every_outcome(server)

        def check() -> dict[Any, float]:
            samples = scrape(server.url)
            assert requests_by(samples) == expected
            return samples

        samples = wait_for(check)
        total = sum(expected.values())
        assert samples[("telemetry_rollup_request_duration_seconds_count", ())] == total
        assert samples[("telemetry_rollup_request_duration_seconds_bucket", (("le", "+Inf"),))] == total
        assert samples[("telemetry_rollup_counts_stored_total", (("app", "acme"),))] == acme_values == 7 + 5 + 120
        assert samples[("telemetry_rollup_reports_total", (("app", "acme"), ("outcome", "stored")))] == 2
        assert samples[("telemetry_rollup_reports_total", (("app", "acme"), ("outcome", "duplicate")))] == 1
        assert samples[("telemetry_rollup_reports_total", (("app", OTHER_APPS), ("outcome", "stored")))] == 1
        assert samples[("telemetry_rollup_database_errors_total", ())] == 0
        # Bounded: the allowlist's apps, [metrics] apps and "(other)", nothing a client chose.
        apps = {dict(labels).get("app") for (name, labels) in samples if name.startswith("telemetry_rollup_")}
        assert apps == {None, "acme", "beta", "gamma", OTHER_APPS}
    finally:
        server.stop()


def test_guessing_the_metrics_token_is_throttled(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, config=CONFIG)
    try:
        guesses = [{"Authorization": f"Bearer guess-{i}"} for i in range(11)]
        statuses = [requests.get(server.url + "/metrics", headers=h, timeout=10).status_code for h in guesses]
        assert statuses == [401] * 10 + [429]
        assert requests.get(server.url + "/metrics", headers=AUTH, timeout=10).status_code == 429
    finally:
        server.stop()
    assert TOKEN not in server.output() and "guess-" not in server.output()


def test_several_workers_give_the_same_totals_at_every_scrape(tmp_path: Path) -> None:
    """Each scrape reaches one worker; every one answers the server's totals (multiprocess mode),
    and the directory that holds the workers' files is gone once the server stops."""
    server = Server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, config=CONFIG, workers=2)
    try:
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            response = requests.post(server.url + "/v1/rollups", json=rollup2("acme"), headers={"Connection": "close"})
            assert response.json()["stored"] == 1
        for _ in range(20):
            samples = scrape(server.url)
            assert requests_by(samples)[("stored", "")] == 40
            assert samples[("telemetry_rollup_counts_stored_total", (("app", "acme"),))] == 40 * 120
            assert samples[("telemetry_rollup_request_duration_seconds_count", ())] == 40
        children = _children(server.proc.pid)  # the two workers (and multiprocessing's tracker)
        (directory,) = {_environ(pid)["PROMETHEUS_MULTIPROC_DIR"] for pid in children}
        files = {f.name for f in Path(directory).glob("*.db")}
        assert len([pid for pid in children if f"counter_{pid}.db" in files]) == 2  # both counted
    finally:
        server.stop()
    assert not Path(directory).exists()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _environ(pid: int) -> dict[str, str]:
    """A worker's environment as it was started (the supervisor set the directory before)."""
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)


@pytest.mark.postgres
def test_database_errors_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's PostgreSQL connections are cut (pg_terminate_backend, found by their
    application name): the next request is a 503, and /metrics counts it."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set (run .ci/postgres.sh)")
    import psycopg

    name = f"metrics-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)  # libpq reads it: the server's connections carry it
    server = Server(url, tmp_path, config=CONFIG)
    monkeypatch.delenv("PGAPPNAME")
    try:
        assert server.post(rollup2("acme")).status_code == 200
        with psycopg.connect(url, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchall()
        assert cut and all(ok for (ok,) in cut)
        assert server.post(rollup2("acme")).status_code == 503
        samples = wait_for(lambda: scrape(server.url))
        assert samples[("telemetry_rollup_database_errors_total", ())] >= 1
        assert requests_by(samples)[("error", "database")] == 1
        assert server.post(rollup2("acme")).status_code == 200  # a new connection
    finally:
        server.stop()


# -- a real Prometheus ---------------------------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run installs it)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, tuple[str, str]]) -> str:
        """Prometheus scraping each job's 127.0.0.1 target every second with its token."""
        port = free_port()
        jobs = []
        for job, (target, token) in targets.items():
            token_file = tmp_path / f"{job}.token"
            token_file.write_text(token)
            jobs.append(
                {
                    "job_name": job,
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "authorization": {"credentials_file": str(token_file)},
                    "static_configs": [{"targets": [target]}],
                }
            )
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))  # YAML
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        processes.append(proc)
        api = f"http://127.0.0.1:{port}"
        wait_for(lambda: _assert_ready(api, proc, tmp_path), timeout=60)
        return api

    yield start
    for proc in processes:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assert_ready(api: str, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError((tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])
    try:
        assert requests.get(api + "/-/ready", timeout=2).status_code == 200
    except requests.RequestException as exc:
        raise AssertionError(str(exc)) from None


def query(api: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Prometheus's instant query API: labels -> value of each series of the result."""
    response = requests.get(api + "/api/v1/query", params={"query": promql}, timeout=10)
    payload = response.json()
    assert payload["status"] == "success", payload
    skip = ("job", "instance", "__name__")
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k not in skip)): float(r["value"][1])
        for r in payload["data"]["result"]
    }


def test_prometheus_scrapes_the_figures(tmp_path: Path, prometheus: Any) -> None:
    """Debian's Prometheus scrapes two workers on 127.0.0.1 with the token, and its query API
    gives back exactly what was sent."""
    server = Server(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, config=CONFIG, workers=2)
    try:
        expected, acme_values = send_every_outcome(server)
        for _ in range(10):
            assert server.post(rollup2("beta")).json()["stored"] == 1
        expected[("stored", "")] += 10
        target = f"127.0.0.1:{server.port}"
        api = prometheus({"telemetry": (target, TOKEN)})

        def by_outcome() -> None:
            got = query(api, 'sum by (outcome, reason) (telemetry_rollup_requests_total{job="telemetry"})')
            # Prometheus keeps no empty label: reason "" comes back absent.
            assert {(dict(k)["outcome"], dict(k).get("reason", "")): v for k, v in got.items()} == expected

        wait_for(by_outcome, timeout=60)
        assert query(api, 'up{job="telemetry"}') == {(): 1.0}
        stored = query(api, 'telemetry_rollup_counts_stored_total{job="telemetry"}')
        assert stored == {
            (("app", "acme"),): float(acme_values),
            (("app", "beta"),): 120.0 + 1200.0,
            (("app", "gamma"),): 0.0,
            (("app", OTHER_APPS),): 0.0,
        }
        count = query(api, 'telemetry_rollup_request_duration_seconds_count{job="telemetry"}')
        assert count == {(): float(sum(expected.values()))}
        p99 = query(api, "histogram_quantile(0.99, telemetry_rollup_request_duration_seconds_bucket)")
        (value,) = p99.values()
        assert 0 < value <= 10
    finally:
        server.stop()
