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
from telemetry_rollup.server.dashboard import (
    PAGE_NAMES,
    TOP_VALUES,
    AppData,
    Page,
    Query,
    QueryError,
    app_charts,
    parse_query,
    render,
    shape_app,
)
from telemetry_rollup.server.dashboard_http import allowed

TODAY = date(2026, 11, 22)
#: (app, day, name, total) as the store sums them
ROWS = [
    ("acme", "2026-11-20", "build", 100),
    ("acme", "2026-11-21", "build", 50),
    ("acme", "2026-11-21", "lint", 7),
    ("acme", "2026-11-21", "build:ok", 45),
    ("acme", "2026-11-21", "build:error", 5),
    ("acme", "2026-11-21", "build:error:E42", 5),
    ("acme", "2026-11-21", "build:dur:lt1s", 40),
    ("acme", "2026-11-21", "build:dur:ge1m", 10),
    ("acme", "2026-11-22", "lint", 3),
    ("other", "2026-11-21", "run", 9),
]
BY = {
    "app_version": [("1.4.0", 3), ("1.5.0", 1)],
    "os": [("linux", 4)],
    "python": [],
}
REFUSALS = [("counter_not_allowed", 2), ("counter_not_allowed", 1), ("app_version_too_old", 4)]
MACHINES = [("2026-11-20", 4), ("2026-11-21", 3)]
Q = Query(None, "2026-11-20", "2026-11-22")


def acme(query: Query = Q, page_no: int = 1, rows: list[tuple[str, str, str, int]] = ROWS) -> AppData:
    mine = [r for r in rows if r[0] == "acme" and query.since <= r[1] <= query.until]
    totals: dict[str, int] = {}
    for _, _, name, total in mine:
        totals[name] = totals.get(name, 0) + total
    return shape_app(
        "acme",
        list(totals.items()),
        query,
        page_no,
        daily=[(n, d, t) for _, d, n, t in mine],
        machines=MACHINES,
        by=BY,
        refusals=REFUSALS,
    )


def by_id(charts: list[Chart]) -> dict[str, tuple[tuple[str, float], ...]]:
    return {c.id: c.items for c in charts}


def test_what_each_chart_is_fed() -> None:
    charts = by_id(app_charts(acme(), Q))
    assert charts["totals"] == (("build", 150), ("lint", 10))  # timed() counters are not plain counters
    assert charts["machines"] == (("2026-11-20", 4), ("2026-11-21", 3), ("2026-11-22", 0))
    assert charts["counts:build"] == (("2026-11-20", 100), ("2026-11-21", 50), ("2026-11-22", 0))
    assert charts["counts:lint"] == (("2026-11-20", 0), ("2026-11-21", 7), ("2026-11-22", 3))
    assert "counts:build:ok" not in charts and "counts:build:dur:lt1s" not in charts
    assert charts["by:app_version"] == (("1.4.0", 3), ("1.5.0", 1))
    assert charts["by:os"] == (("linux", 4),)
    assert charts["by:python"] == ()
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


def test_narrow_by_name() -> None:
    q = Query("acme", "2026-11-20", "2026-11-21", "build")
    data = acme(q)
    assert data.totals == (("build", 150),)
    assert [o["name"] for o in data.operations] == ["build"]
    assert by_id(app_charts(data, q))["counts:build"] == (("2026-11-20", 100), ("2026-11-21", 50))
    glob = acme(Query("acme", "2026-11-20", "2026-11-22", "l*"))
    assert glob.totals == (("lint", 10),) and glob.operations == ()


def test_a_page_shows_the_largest_counters_and_says_how_many_more() -> None:
    rows = [("acme", "2026-11-21", f"n{i:05d}", i) for i in range(1, 5001)]
    first = acme(Q, 1, rows)
    assert first.names_total == 5000 and first.pages == -(-5000 // PAGE_NAMES)
    assert [n for n, _ in first.totals] == [f"n{i:05d}" for i in range(5000, 5000 - PAGE_NAMES, -1)]
    second = acme(Q, 2, rows)
    assert second.totals[0] == ("n04980", 4980)
    charts = by_id(app_charts(first, Q))
    assert sum(1 for c in charts if c.startswith("counts:")) == PAGE_NAMES
    html = render(Page(Query("acme", Q.since, Q.until), (first,), 1, ("acme",)), extra_params={"token": "t"})
    assert "5,000 counters" in html and 'rel="next"' in html and "page=2" in html
    assert len(html) < 200_000


def test_machines_by_shows_the_top_values_and_the_rest_as_one() -> None:
    by = {"app_version": [(f"1.{i}", i) for i in range(1, 101)]}
    data = shape_app("acme", [], Q, 1, by=by)
    shown = data.by["app_version"]
    assert len(shown) == TOP_VALUES
    assert shown[0] == ("1.100", 100)
    assert shown[-1] == ("(91 others)", sum(range(1, 92)))


def test_parse_query() -> None:
    assert parse_query({}, TODAY) == Query(None, "2026-10-24", "2026-11-22")
    assert parse_query({"days": "1", "app": "acme", "name": "b*"}, TODAY) == Query(
        "acme", "2026-11-22", "2026-11-22", "b*"
    )
    assert parse_query({"since": "2026-11-01", "until": "2026-11-03"}, TODAY) == Query(None, "2026-11-01", "2026-11-03")
    assert parse_query({"page": "3"}, TODAY).page == 3
    assert parse_query({"until": "9999-12-31"}, TODAY).since == "9999-12-02"
    for bad in (
        {"days": "0"},
        {"days": "x"},
        {"since": "2026-13-01"},
        {"since": "2026-11-05", "until": "2026-11-01"},
        {"until": "0001-01-01"},
        {"until": "2000-01-05", "days": "30"},
        {"since": "0001-01-01"},
        {"page": "0"},
        {"page": "-1"},
    ):
        with pytest.raises(QueryError):
            parse_query(bad, TODAY)


def test_render_numbers_are_in_the_labels() -> None:
    other = shape_app("other", [("run", 9)], Q, 1, daily=[("run", "2026-11-21", 9)])
    result = Page(Q, (acme(), other), 2, ("acme", "other"))
    html = render(result, extra_params={"token": "t0ken-value"}, footer="Failed dashboard logins: 3")
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
    assert "Failed dashboard logins: 3" in html
    empty = chart_html(Chart("x", "X", ()))
    assert "<svg" not in empty and "nothing in this range" in empty


def test_an_app_with_only_deletions_has_its_section() -> None:
    data = shape_app("gone", [], Q, 1, deletions=[("2026-11-21", 2)])
    html = render(Page(Q, (data,), 1, ("gone",)))
    section = html.split('data-app="gone"')[1]
    assert "Deletion requests honoured" in section and ">2</td>" in section


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
