"""The dashboard: what each chart is fed (pure), the page, the config section, and access
control over real HTTP (off -> 404; on -> 401 without credentials; ingest stays open)."""

from __future__ import annotations

import base64
import re
from datetime import date
from pathlib import Path

import pytest
import requests
from server_helpers import Server, day, rollup

from telemetry_rollup._html import Chart, chart_html
from telemetry_rollup.server.config import ConfigError, DashboardAccess, parse_config
from telemetry_rollup.server.dashboard import Query, QueryError, app_charts, narrow, parse_query, render
from telemetry_rollup.server.dashboard_http import allowed
from telemetry_rollup.server.report import Report, outcomes

TODAY = date(2026, 11, 22)
COUNTS = [
    {"app": "acme", "day": "2026-11-20", "name": "build", "total": 100, "machines": 4},
    {"app": "acme", "day": "2026-11-21", "name": "build", "total": 50, "machines": 2},
    {"app": "acme", "day": "2026-11-21", "name": "lint", "total": 7, "machines": 1},
    {"app": "acme", "day": "2026-11-21", "name": "build:ok", "total": 45, "machines": 2},
    {"app": "acme", "day": "2026-11-21", "name": "build:error", "total": 5, "machines": 1},
    {"app": "acme", "day": "2026-11-21", "name": "build:error:E42", "total": 5, "machines": 1},
    {"app": "acme", "day": "2026-11-21", "name": "build:dur:lt1s", "total": 40, "machines": 2},
    {"app": "acme", "day": "2026-11-21", "name": "build:dur:ge1m", "total": 10, "machines": 1},
    {"app": "acme", "day": "2026-11-22", "name": "lint", "total": 3, "machines": 1},
    {"app": "other", "day": "2026-11-21", "name": "run", "total": 9, "machines": 1},
]
REPORT = Report(
    since="2026-11-20",
    until="2026-11-22",
    app=None,
    counts=COUNTS,
    machines={
        "app_version": [
            {"app": "acme", "value": "1.4.0", "machines": 3},
            {"app": "acme", "value": "1.5.0", "machines": 1},
        ],
        "os": [{"app": "acme", "value": "linux", "machines": 4}],
        "python": [{"app": "other", "value": "3.12", "machines": 1}],
    },
    refusals=[
        {"app": "acme", "day": "2026-11-21", "reason": "counter_not_allowed", "n": 2},
        {"app": "acme", "day": "2026-11-22", "reason": "counter_not_allowed", "n": 1},
        {"app": "acme", "day": "2026-11-22", "reason": "app_version_too_old", "n": 4},
    ],
    deletions=[],
    outcomes=outcomes(COUNTS),
)
MACHINES = [("acme", "2026-11-20", 4), ("acme", "2026-11-21", 3), ("other", "2026-11-21", 1)]
Q = Query(None, "2026-11-20", "2026-11-22")


def by_id(charts: list[Chart]) -> dict[str, tuple[tuple[str, float], ...]]:
    return {c.id: c.items for c in charts}


def test_what_each_chart_is_fed() -> None:
    charts = by_id(app_charts(REPORT, MACHINES, "acme", Q))
    assert charts["totals"] == (("build", 150), ("lint", 10))  # timed() counters are not plain counters
    assert charts["machines"] == (("2026-11-20", 4), ("2026-11-21", 3), ("2026-11-22", 0))
    assert charts["counts:build"] == (("2026-11-20", 100), ("2026-11-21", 50), ("2026-11-22", 0))
    assert charts["counts:lint"] == (("2026-11-20", 0), ("2026-11-21", 7), ("2026-11-22", 3))
    assert "counts:build:ok" not in charts and "counts:build:dur:lt1s" not in charts
    assert charts["by:app_version"] == (("1.4.0", 3), ("1.5.0", 1))
    assert charts["by:os"] == (("linux", 4),)
    assert charts["by:python"] == ()  # only "other" has a Python row
    assert charts["error_rate"] == (("build", 10.0),)  # 5 errors / (45 ok + 5 errors)
    assert charts["codes:build"] == (("E42", 5),)
    assert charts["durations:build"] == (
        ("lt10ms", 0),
        ("lt100ms", 0),
        ("lt1s", 40),
        ("lt10s", 0),
        ("lt1m", 0),
        ("ge1m", 10),
    )
    assert charts["refusals"] == (("app_version_too_old", 4), ("counter_not_allowed", 3))
    assert by_id(app_charts(REPORT, MACHINES, "other", Q))["totals"] == (("run", 9),)


def test_narrow_by_until_and_name() -> None:
    q = Query(None, "2026-11-20", "2026-11-21", "build")
    report, machines = narrow(REPORT, MACHINES, q)
    assert {r["name"] for r in report.counts} == {
        "build",
        "build:ok",
        "build:error",
        "build:error:E42",
        "build:dur:lt1s",
        "build:dur:ge1m",
    }
    assert all(r["day"] <= "2026-11-21" for r in report.counts + report.refusals)
    assert [o["name"] for o in report.outcomes] == ["build"]
    charts = by_id(app_charts(report, machines, "acme", q))
    assert charts["counts:build"] == (("2026-11-20", 100), ("2026-11-21", 50))
    assert charts["refusals"] == (("counter_not_allowed", 2),)
    glob = narrow(REPORT, MACHINES, Query(None, "2026-11-20", "2026-11-22", "l*"))[0]
    assert {r["name"] for r in glob.counts} == {"lint"}


def test_parse_query() -> None:
    assert parse_query({}, TODAY) == Query(None, "2026-10-24", "2026-11-22")
    assert parse_query({"days": "1", "app": "acme", "name": "b*"}, TODAY) == Query(
        "acme", "2026-11-22", "2026-11-22", "b*"
    )
    assert parse_query({"since": "2026-11-01", "until": "2026-11-03"}, TODAY) == Query(None, "2026-11-01", "2026-11-03")
    for bad in ({"days": "0"}, {"days": "x"}, {"since": "2026-13-01"}, {"since": "2026-11-05", "until": "2026-11-01"}):
        with pytest.raises(QueryError):
            parse_query(bad, TODAY)


def test_render_numbers_are_in_the_labels() -> None:
    html = render(REPORT, MACHINES, Q, extra_params={"token": "t0ken-value"})
    assert html.startswith("<!doctype html>")
    assert "<script" not in html
    assert not re.findall(r"https?://", html)  # no URL at all: nothing to load
    section = html.split('data-app="acme"')[1].split('data-app="other"')[0]
    build = section.split('data-chart="counts:build"')[1].split("</figure>")[0]
    assert re.findall(r'<text class="value"[^>]*>([^<]*)</text>', build) == ["100", "50", "0"]
    rate = section.split('data-chart="error_rate"')[1].split("</figure>")[0]
    assert ">10%</text>" in rate
    assert "?app=other&amp;since=2026-11-20&amp;token=t0ken-value&amp;until=2026-11-22" in html
    assert '<input type="hidden" name="token" value="t0ken-value">' in html
    empty = chart_html(Chart("x", "X", ()))
    assert "<svg" not in empty and "nothing in this range" in empty


def test_config_section() -> None:
    assert parse_config({}).dashboard is None
    assert parse_config({"dashboard": {"token": "12345678"}}).dashboard == DashboardAccess(token="12345678")
    both = parse_config({"dashboard": {"user": "ops", "password": "pass-word"}}).dashboard
    assert both == DashboardAccess(user="ops", password="pass-word")
    for bad in ({}, {"token": "short"}, {"user": "ops"}, {"token": "12345678", "tokn": "x"}, {"token": 12345678}):
        with pytest.raises(ConfigError):
            parse_config({"dashboard": bad})


def test_allowed() -> None:
    access = DashboardAccess(token="tok-12345", user="ops", password="pass-word")
    basic = "Basic " + base64.b64encode(b"ops:pass-word").decode()
    assert allowed(access, "Bearer tok-12345", "")
    assert allowed(access, "", "tok-12345")
    assert allowed(access, basic, "")
    assert not allowed(access, "", "")
    assert not allowed(access, "Bearer tok-1234", "")
    assert not allowed(access, "Basic " + base64.b64encode(b"ops:pass-wordx").decode(), "")
    assert not allowed(access, "Basic !!!", "")
    assert not allowed(DashboardAccess(user="ops", password="pass-word"), "Bearer ", "")


def test_http_access(tmp_path: Path) -> None:
    limits = {"limits": {"per_machine": 1000, "per_address": 1000}}
    closed = Server(f"sqlite:///{tmp_path / 'a.db'}", tmp_path, config=limits)
    try:
        assert requests.get(closed.url + "/dashboard", timeout=10).status_code == 404
    finally:
        closed.stop()
    config = {**limits, "dashboard": {"token": "tok-12345", "user": "ops", "password": "pass-word"}}
    server = Server(f"sqlite:///{tmp_path / 'b.db'}", tmp_path, config=config)
    try:
        body = rollup(
            "acme", reports=[{"id": "6f1d2c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f", "day": day(-1), "counts": {"build": 37}}]
        )
        assert server.post(body).json()["stored"] == 1  # ingest needs no credentials
        url = server.url + "/dashboard"
        denied = requests.get(url, timeout=10)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(url, params={"token": "wrong-token"}, timeout=10).status_code == 401
        assert requests.get(url, auth=("ops", "wrong-pass"), timeout=10).status_code == 401
        for kwargs in (
            {"headers": {"Authorization": "Bearer tok-12345"}},
            {"auth": ("ops", "pass-word")},
            {"params": {"token": "tok-12345", "app": "acme", "days": "3"}},
        ):
            ok = requests.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
            assert ok.status_code == 200, ok.text
            assert ok.headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in ok.headers["Content-Security-Policy"]
            chart = ok.text.split('data-chart="counts:build"')[1].split("</figure>")[0]
            assert ">37</text>" in chart
        bad = requests.get(url, params={"token": "tok-12345", "days": "0"}, timeout=10)
        assert bad.status_code == 400
        assert "/dashboard" not in requests.get(server.url + "/openapi.json", timeout=10).text
    finally:
        server.stop()


def test_report_format_html(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'c.db'}", tmp_path, config={"limits": {"per_machine": 1000}})
    try:
        body = rollup(
            "acme", reports=[{"id": "7f1d2c1e-1b2a-4c3d-8e9f-0a1b2c3d4e5f", "day": day(-1), "counts": {"lint": 12}}]
        )
        assert server.post(body).json()["stored"] == 1
        out = tmp_path / "report.html"
        result = server.report("--app", "acme", "--days", "3", "--format", "html", "--out", str(out))
        assert result.returncode == 0 and result.stdout == "", result.stderr
        html = out.read_text()
        assert ">12</text>" in html.split('data-chart="counts:lint"')[1].split("</figure>")[0]
        assert "<form" not in html and "<script" not in html
        stdout = server.report("--app", "acme", "--format", "html", "--name", "nothing")
        assert stdout.returncode == 0 and 'data-chart="counts:lint"' not in stdout.stdout
        assert server.report("--format", "html", "--since", "2026-99-01").returncode == 2
    finally:
        server.stop()
