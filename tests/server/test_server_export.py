"""``python -m telemetry_rollup export --otlp URL`` (issue 16, item 5): real server processes
store the reports, real ``export`` processes send them to a real OTLP/HTTP endpoint on 127.0.0.1
(``otlp_receiver.py``, decoding with opentelemetry-proto), and the totals are compared exactly
with the report's, including the runs that must send nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import Point, Receiver
from server_helpers import Server, day, free_port, new_id, new_key, rollup2, today

from telemetry_rollup.server.export import (
    CLOSED_AFTER_DAYS,
    NS_PER_DAY,
    AppDay,
    day_window,
    due,
    endpoint_key,
    late,
)
from telemetry_rollup.server.store import Environment, Ingest, ReportRows, open_store

OPEN = {"limits": {"per_machine": 100_000, "per_address": 100_000}}


def export(db: str, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "export", "--db", db, "--otlp", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def report_totals(server: Server, app: str) -> dict[tuple[str, str, str], int]:
    """(app, day, counter) -> total, as ``report --format json`` prints them."""
    out = server.report("--app", app, "--days", "60", "--until", day(1), "--format", "json")
    assert out.returncode == 0, out.stderr
    return {(r["app"], r["day"], r["name"]): r["total"] for r in json.loads(out.stdout)["counts"]}


def received_per_version(points: list[Point]) -> dict[tuple[str, str | None, str, str], int]:
    """(app, app version, day, counter) -> value, checking each point is sent once and is a day's
    delta, and that its resource is exactly the app and its version."""
    out: dict[tuple[str, str | None, str, str], int] = {}
    for p in points:
        start = datetime.fromtimestamp(p.start / 1e9, timezone.utc)
        assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
        assert p.end - p.start == NS_PER_DAY
        assert p.delta and p.monotonic
        assert p.metric == "telemetry_rollup.count" and p.scope == "telemetry_rollup" and p.scope_version
        version = (("service.version", p.version),) if p.version is not None else ()
        assert p.resource == (("service.name", p.app), *version)
        key = (p.app, p.version, start.date().isoformat(), p.counter)
        assert key not in out, f"{key} sent twice"
        out[key] = p.value
    return out


def received(points: list[Point]) -> dict[tuple[str, str, str], int]:
    """(app, day, counter) -> value summed over the app versions (the report's totals)."""
    out: dict[tuple[str, str, str], int] = {}
    for (app, _, d, counter), value in received_per_version(points).items():
        out[(app, d, counter)] = out.get((app, d, counter), 0) + value
    return out


def post(server: Server, app: str, days: dict[str, dict[str, int]], key: str | None = None) -> None:
    reports = [{"id": new_id(), "day": d, "counts": counts} for d, counts in days.items()]
    assert server.post(rollup2(app, key or new_key(), reports=reports)).json()["stored"] == len(reports)


# -- pure parts -------------------------------------------------------------------------------


def test_a_day_is_closed_when_the_server_refuses_it() -> None:
    from telemetry_rollup.server.models import MAX_DAYS_OLD

    assert CLOSED_AFTER_DAYS == MAX_DAYS_OLD + 1


def test_day_window_and_endpoint_key() -> None:
    start, end = day_window("2026-11-20")
    assert start == int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()) * 10**9
    assert end == int(datetime(2026, 11, 21, tzinfo=timezone.utc).timestamp()) * 10**9
    assert endpoint_key("HTTP://User:Secret@Collector:4318/v1/metrics?tenant=x#f") == "http://collector:4318/v1/metrics"
    assert endpoint_key("https://[::1]/v1/metrics") == "https://[::1]/v1/metrics"


def test_due_and_late() -> None:
    rows: list[tuple[str, str, str | None, str, int]] = [
        ("b", "2026-01-02", "1.0", "x", 1),
        ("a", "2026-01-02", "2.0", "y", 2),
        ("a", "2026-01-02", "1.0", "x", 3),
        ("a", "2026-01-02", None, "x", 5),
        ("a", "2026-01-01", "1.0", "x", 4),
    ]
    assert due(rows, {("a", "2026-01-01")}) == [
        AppDay("a", "2026-01-02", ((None, "x", 5), ("1.0", "x", 3), ("2.0", "y", 2))),
        AppDay("b", "2026-01-02", (("1.0", "x", 1),)),
    ]
    assert due(rows, set())[1].versions() == [(None, [("x", 5)]), ("1.0", [("x", 3)]), ("2.0", [("y", 2)])]
    assert late(rows, {("a", "2026-01-02"): 9, ("a", "2026-01-01"): 4}) == {("a", "2026-01-02"): 1}


# -- real processes ---------------------------------------------------------------------------


def test_each_app_day_is_sent_once_with_the_reports_totals(tmp_path: Path, receiver: Receiver) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        first, second = new_key(), new_key()
        post(server, "acme", {day(-3): {"build": 5, "lint": 1}, day(-2): {"build": 7, "build:ok": 6}}, first)
        post(server, "acme", {day(-2): {"build": 3, "deploy": 1}, day(-1): {"build": 100}}, second)
        post(server, "beta", {day(-2): {"x": 42}})
        expected = {**report_totals(server, "acme"), **report_totals(server, "beta")}

        # --settle 2: the days up to two days ago, each app's day one request, oldest first.
        result = export(db, receiver.url, "--settle", "2")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.startswith("exported 3 app-day(s) of 2 app(s)")
        assert receiver.paths == ["/v1/metrics"] * 3
        got = received(receiver.points())
        assert got == {k: v for k, v in expected.items() if k[1] <= day(-2)}
        assert [(points_app_day(r)) for r in receiver.requests] == [
            ("acme", day(-3)),
            ("acme", day(-2)),
            ("beta", day(-2)),
        ]

        again = export(db, receiver.url, "--settle", "2")
        assert again.returncode == 0 and again.stderr == ""
        assert again.stdout.startswith("nothing new to export")
        assert len(receiver.requests) == 3  # a second run adds nothing

        assert export(db, receiver.url, "--settle", "1").returncode == 0  # yesterday's turn
        assert received(receiver.points()) == expected

        # A report for a day already sent reaches the server: not sent, and said.
        post(server, "acme", {day(-2): {"build": 4, "lint": 2}})
        late_run = export(db, receiver.url, "--settle", "1")
        assert late_run.returncode == 0
        assert late_run.stderr.strip() == (
            f"python -m telemetry_rollup export: acme {day(-2)}: 6 counts arrived after the day was sent"
            " (not sent; see --settle)"
        )
        assert len(receiver.requests) == 4

        # Another endpoint has marks of its own: it gets everything, once.
        other = Receiver()
        try:
            assert export(db, other.url + "/v1/metrics", "--settle", "1").returncode == 0
            assert received(other.points()) == {**report_totals(server, "acme"), **report_totals(server, "beta")}
        finally:
            other.close()
    finally:
        server.stop()


def test_each_app_version_is_a_resource_with_its_own_totals(
    db_url: str, app_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Machines on three app versions (and one that gave none) report the same counters on the
    same days: each day is one request with one resource per version (service.name and
    service.version), each point that version's total; summed over the versions they are the
    report's totals. A second export, and an export killed before its mark, send the same points."""
    server = Server(db_url, tmp_path, config=OPEN)
    sent: Counter[tuple[str | None, str, str]] = Counter()

    def post_version(version: str | None, days: dict[str, dict[str, int]]) -> None:
        reports = [{"id": new_id(), "day": d, "counts": counts} for d, counts in days.items()]
        body = rollup2(app_name, new_key(), reports=reports, app_version=version)
        assert server.post(body).json()["stored"] == len(reports)
        for d, counts in days.items():
            sent.update({(version, d, name): n for name, n in counts.items()})

    try:
        post_version("1.0", {day(-3): {"build": 5, "lint": 1}, day(-2): {"build": 7}})
        post_version("1.0", {day(-3): {"build": 2}})
        post_version("1.1", {day(-3): {"build": 11}, day(-2): {"build": 13, "deploy": 1}})
        post_version("2.0", {day(-2): {"lint": 4}})
        post_version(None, {day(-2): {"build": 100}})
        expected = report_totals(server, app_name)
    finally:
        server.stop()
    result = export(db_url, receiver.url, "--app", app_name, "--settle", "1")
    assert result.returncode == 0, result.stderr
    points = receiver.points()
    per_version = received_per_version(points)
    assert per_version == {(app_name, v, d, name): n for (v, d, name), n in sent.items()}
    assert received(points) == expected
    assert [points_app_day(r) for r in receiver.requests] == [(app_name, day(-3)), (app_name, day(-2))]
    # One resource per version in each request, the unknown version's without service.version.
    from otlp_receiver import points_of

    resources = [[rm.resource for rm in r.resource_metrics] for r in receiver.requests]
    versions = [[dict((kv.key, kv.value.string_value) for kv in res.attributes) for res in rs] for rs in resources]
    assert versions == [
        [{"service.name": app_name, "service.version": "1.0"}, {"service.name": app_name, "service.version": "1.1"}],
        [
            {"service.name": app_name},
            {"service.name": app_name, "service.version": "1.0"},
            {"service.name": app_name, "service.version": "1.1"},
            {"service.name": app_name, "service.version": "2.0"},
        ],
    ]
    assert sum(len(points_of(r)) for r in receiver.requests) == len(points)
    # Re-exporting to a fresh endpoint's marks sends the very same points (idempotent content).
    other = Receiver()
    try:
        assert export(db_url, other.url + "/v1/metrics", "--app", app_name, "--settle", "1").returncode == 0
        assert other.points() == points
    finally:
        other.close()
    assert export(db_url, receiver.url, "--app", app_name, "--settle", "1").stdout.startswith("nothing new")


def points_app_day(request: Any) -> tuple[str, str]:
    from otlp_receiver import points_of

    (only,) = {
        (p.app, datetime.fromtimestamp(p.start / 1e9, timezone.utc).date().isoformat()) for p in points_of(request)
    }
    return only


def test_app_and_since_narrow_what_is_sent(db_url: str, app_name: str, tmp_path: Path, receiver: Receiver) -> None:
    server = Server(db_url, tmp_path, config=OPEN)
    try:
        post(server, app_name, {day(-4): {"a": 1}, day(-3): {"a": 2}, day(-2): {"a": 3}})
        post(server, app_name + "-other", {day(-3): {"a": 9}})
        first = export(db_url, receiver.url, "--app", app_name, "--since", day(-3), "--settle", "2")
        assert first.returncode == 0, first.stderr
        assert received(receiver.points()) == {(app_name, day(-3), "a"): 2, (app_name, day(-2), "a"): 3}
        second = export(db_url, receiver.url, "--app", app_name, "--settle", "2")
        assert second.returncode == 0, second.stderr
        assert received(receiver.points()) == {
            (app_name, day(-4), "a"): 1,
            (app_name, day(-3), "a"): 2,
            (app_name, day(-2), "a"): 3,
        }
    finally:
        server.stop()


def test_a_refused_request_is_not_marked(tmp_path: Path, receiver: Receiver) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        post(server, "acme", {day(-3): {"a": 1}, day(-2): {"a": 2}})
        receiver.statuses = [200, 400]
        failed = export(db, receiver.url, "--settle", "1")
        line = one_line(failed, 1)
        assert f"acme {day(-2)} not sent" in line and "400" in line
        assert failed.stdout.startswith(f"exported 1 app-day(s) of 1 app(s), {day(-3)}")
        assert export(db, receiver.url, "--settle", "1").returncode == 0
        # day -2 twice (refused, then accepted), day -3 once: nothing was marked without a 2xx.
        sent = Counter((p.counter, p.start) for p in receiver.points())
        assert sorted(sent.values()) == [1, 2] and len(receiver.requests) == 3
    finally:
        server.stop()


def test_transient_errors_are_retried_within_the_timeout(tmp_path: Path, receiver: Receiver) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        post(server, "acme", {day(-2): {"a": 1}})
        receiver.statuses = [503, 429]
        result = export(db, receiver.url, "--settle", "1", "--timeout", "20")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # the exporter's retry warnings are not printed
        assert len(receiver.requests) == 3
        assert len(set(receiver.points())) == 1  # the same point, three times, accepted once
    finally:
        server.stop()


def test_an_endpoint_that_never_answers_is_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        post(server, "acme", {day(-2): {"a": 1}})
    finally:
        server.stop()
    line = one_line(export(db, f"http://127.0.0.1:{free_port()}", "--settle", "1", "--timeout", "2"), 1)
    assert f"acme {day(-2)} not sent" in line


def test_an_export_killed_after_the_backend_accepted_resends_identical_points(
    tmp_path: Path, receiver: Receiver
) -> None:
    """SIGKILL while the endpoint holds the request (stored there, no answer yet): that app's day is
    not marked, so the next run sends it again, and it is the very same points: same resource,
    scope, metric, attributes, start, end and value (docs/server.md: what a backend does then)."""
    db = f"sqlite:///{tmp_path / 'k.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        post(server, "acme", {day(-3): {"a": 1, "b": 2}, day(-2): {"a": 3}})
    finally:
        server.stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry_rollup", "export", "--db", db, "--otlp", receiver.url, "--settle", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    receiver.before_answer = lambda: proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    receiver.before_answer = None
    first = receiver.points()
    assert {p.counter for p in first} == {"a", "b"} and len(receiver.requests) == 1
    # The killed run's claim is still in the database: the next run waits for it to expire.
    busy = one_line(export(db, receiver.url, "--settle", "1"), 1)
    assert "another export to this endpoint is running" in busy
    _expire_claims(db)
    assert export(db, receiver.url, "--settle", "1").returncode == 0
    again = receiver.points()[len(first) : len(first) + len(first)]
    assert again == first  # identical points, as a backend sees them
    assert Counter(p.start for p in receiver.points()) == {first[0].start: 4, first[0].start + NS_PER_DAY: 1}
    assert export(db, receiver.url, "--settle", "1").stdout.startswith("nothing new")


def _expire_claims(db: str) -> None:
    store = open_store(db)
    try:
        with store.transaction() as tx:
            tx.execute("UPDATE export_claims SET until = 0")
    finally:
        store.close()


def test_two_exports_at_once_send_each_day_once(db_url: str, app_name: str, tmp_path: Path, receiver: Receiver) -> None:
    server = Server(db_url, tmp_path, config=OPEN)
    try:
        post(server, app_name, {day(-4): {"a": 1}, day(-3): {"a": 2}, day(-2): {"a": 3}})
    finally:
        server.stop()
    receiver.delay = 0.5  # each request takes a while: the runs overlap
    args = ["export", "--db", db_url, "--otlp", receiver.url, "--app", app_name, "--settle", "1"]
    command = [sys.executable, "-m", "telemetry_rollup", *args]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=120), run.communicate()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    if codes == [0, 1]:
        (busy,) = [err for code, (_, err) in results if code == 1]
        assert "another export to this endpoint is running" in busy
    assert received(receiver.points()) == {(app_name, day(d), "a"): n for d, n in ((-4, 1), (-3, 2), (-2, 3))}


def test_by_default_a_day_is_sent_once_the_server_refuses_reports_for_it(tmp_path: Path, receiver: Receiver) -> None:
    """Reports for 40, 36 and 35 days ago, stored through the store's ingest (the server refuses
    such days over HTTP now): the default sends the first two only."""
    db = f"sqlite:///{tmp_path / 'd.db'}"
    store = open_store(db)
    env = Environment(app_version="1.0", lib_version="0.1.0", os="linux", arch="x86_64", python="3.11", ci=False)
    old = {(today() - timedelta(days=n)).isoformat(): n for n in (40, 36, 35)}
    try:
        reports = [ReportRows(id=new_id(), day=d, counts={"a": n}) for d, n in old.items()]
        store.ingest(Ingest(app="acme", machine_id=new_id(), env=env, reports=reports), time.time())
    finally:
        store.close()
    result = export(db, receiver.url)
    assert result.returncode == 0, result.stderr
    assert received(receiver.points()) == {("acme", d, "a"): n for d, n in old.items() if n >= CLOSED_AFTER_DAYS}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "2026-02-30"], "--since"),
        (["--since", "1999-12-31"], "2000-01-01"),
        (["--settle", "-1"], "--settle"),
        (["--timeout", "0"], "--timeout"),
        (["--nope"], "--nope"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    line = one_line(export(f"sqlite:///{tmp_path / 'u.db'}", "http://127.0.0.1:4318", *args), 2)
    assert needle in line


def test_endpoint_and_database_errors_are_one_line(tmp_path: Path) -> None:
    line = one_line(export(f"sqlite:///{tmp_path / 'x.db'}", "ftp://127.0.0.1/"), 2)
    assert "--otlp" in line
    missing = subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "export", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "--otlp" in one_line(missing, 2)
    line = one_line(export(f"sqlite:///{tmp_path / 'absent.db'}", "http://127.0.0.1:4318"), 1)
    assert "no database" in line and not (tmp_path / "absent.db").exists()


def test_without_the_otlp_extra_the_line_names_it(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['opentelemetry'] = None\n"
        "from telemetry_rollup import cli\nraise SystemExit(cli.main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "export", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--otlp", "http://h:4318"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "[otlp]" in one_line(result, 2)


def test_the_exporter_environment_reaches_the_endpoint(tmp_path: Path, receiver: Receiver) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS (an API key) is the exporter's, and no resource attribute
    comes from OTEL_RESOURCE_ATTRIBUTES: the resource is exactly the app and its version."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    server = Server(db, tmp_path, config=OPEN)
    try:
        post(server, "acme", {day(-2): {"a": 1}})
    finally:
        server.stop()
    env = dict(
        os.environ,
        OTEL_RESOURCE_ATTRIBUTES="host.name=leak",
        OTEL_SERVICE_NAME="leak",
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20backend-key",
    )
    result = subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "export", "--db", db, "--otlp", receiver.url, "--settle", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (point,) = receiver.points()
    assert point.resource == (("service.name", "acme"), ("service.version", "1.4.0"))
    assert receiver.headers[0]["authorization"] == "Bearer backend-key"
