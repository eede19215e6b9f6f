"""``status`` and ``view`` answer "what does this machine record?" by name and value, today's
counts included, saying which days are open and which closed (issue 12.13)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli_helpers import day, plant, run_cli, run_host

HOST = """
import telemetry_rollup as tr
tr.configure("acme", flush_interval=0)
tr.count("build", 3)
tr.count("lint")
"""


def setup(home: Path) -> None:
    plant(home, "acme", {(day(-2), "deploy"): 2, (day(-1), "build"): 5, (day(-1), "test"): 7})
    # yesterday and the day before are rolled into reports (local: nothing is sent)...
    assert run_cli(home, "flush", "--app", "acme", ACME_TELEMETRY="local").returncode == 0
    # ...then a late count of the day before arrives, and today's counts (made while on: counts
    # made while local are kept apart, never sent, see test_contract.py; no endpoint: none sent)
    plant(home, "acme", {(day(-2), "deploy"): 1})
    assert run_host(home, HOST, ACME_TELEMETRY="1").returncode == 0


def test_status_json_has_every_pending_counter_by_name(home: Path) -> None:
    setup(home)
    app = json.loads(run_cli(home, "status", "--json", ACME_TELEMETRY="local").stdout)["apps"][0]
    days = {d["day"]: d for d in app["pending"]["days"]}
    assert days[day(0)]["names"] == {"build": 3, "lint": 1, "_run:script": 1}
    assert days[day(0)]["state"] == "open" and days[day(0)]["complete"] is False
    assert days[day(-1)]["names"] == {"build": 5, "test": 7}
    assert days[day(-1)]["state"] == "closed"
    assert days[day(-2)]["names"] == {"deploy": 3}
    assert days[day(-2)]["state"] == "complete" and days[day(-2)]["report_counts"] == 2
    # keys are only ever added: the old ones are all still there
    assert set(days[day(0)]) >= {"day", "counts", "reports", "report_counts", "complete"}


def test_status_text_shows_todays_counters_by_name_and_what_is_open(home: Path) -> None:
    setup(home)
    out = run_cli(home, "status", ACME_TELEMETRY="local").stdout
    lines = out.splitlines()
    today = next(i for i, line in enumerate(lines) if line.strip().startswith(day(0)))
    assert "open" in lines[today] and "still counting" in lines[today]
    assert lines[today + 1].split() == ["build", "3,", "_run:script", "1,", "lint", "1"]
    yesterday = next(i for i, line in enumerate(lines) if line.strip().startswith(day(-1)))
    assert "closed" in lines[yesterday] and "1 report" in lines[yesterday]
    assert lines[yesterday + 1].split() == ["test", "7,", "build", "5"]
    before = next(i for i, line in enumerate(lines) if line.strip().startswith(day(-2)))
    assert "partly closed" in lines[before] and lines[before + 1].split() == ["deploy", "3"]


def test_view_shows_todays_counters_by_name(home: Path, tmp_path: Path) -> None:
    setup(home)
    page = tmp_path / "view.html"
    res = run_cli(home, "view", "--no-open", "--out", str(page), ACME_TELEMETRY="local")
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    table = html.split('class="pending-names"', 1)[1].split("</table>", 1)[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
    assert [day(0), "open: still counting", "build", "3"] in rows
    assert [day(0), "open: still counting", "lint", "1"] in rows
    assert any(r[0] == day(-1) and r[1].startswith("closed") and r[2:] == ["test", "7"] for r in rows)
    chart = html.split('data-chart="pending_counts"', 1)[1].split("</figure>", 1)[0]
    values = dict(re.findall(r'data-label="([^"]*)" data-value="([^"]*)"', chart))
    assert values == {"build": "8", "test": "7", "deploy": "3", "lint": "1", "_run:script": "1"}
