"""The formatters on plain data (no database): bars, tables, CSV and JSON shapes."""

from __future__ import annotations

import csv
import io
import json

from telemetry_rollup.server.report import Report, bar, format_csv, format_json, format_table

REPORT = Report(
    since="2026-11-01",
    until="2026-11-22",
    app=None,
    counts=[
        {"app": "acme", "day": "2026-11-20", "name": "build", "total": 100, "machines": 4},
        {"app": "acme", "day": "2026-11-21", "name": "build", "total": 50, "machines": 2},
        {"app": "acme", "day": "2026-11-21", "name": "lint", "total": 1, "machines": 1},
    ],
    machines={
        "app_version": [{"app": "acme", "day": "2026-11-21", "value": "1.4.0", "machines": 3}],
        "os": [],
        "python": [
            {"app": "acme", "day": "2026-11-20", "value": "3.11", "machines": 4},
            {"app": "acme", "day": "2026-11-21", "value": "3.11", "machines": 2},
        ],
    },
    refusals=[{"app": "acme", "day": "2026-11-21", "reason": "counter_not_allowed", "n": 2}],
    deletions=[],
    outcomes=[],
)


def test_bar() -> None:
    assert bar(100, 100) == "█" * 20
    assert bar(50, 100) == "█" * 10
    assert bar(1, 1000) == "▏"  # anything above zero is visible
    assert bar(0, 100) == "" and bar(5, 0) == ""
    assert bar(8, 16, width=1) == "▌"  # half a cell


def test_table() -> None:
    text = format_table(REPORT)
    lines = text.splitlines()
    assert lines[0] == "telemetry_rollup report: all apps, 2026-11-01 .. 2026-11-22 (UTC)"
    rows = [line for line in lines if "acme  2026-11-2" in line and "build" in line]
    assert rows[0].endswith("█" * 20) and rows[1].endswith("█" * 10)
    assert "  (none)" in text  # the empty OS and deletions sections
    assert "counter_not_allowed" in text
    # Machines per value are distinct per day; over several days the table sums machine-days.
    assert [line.split() for line in lines if line.startswith("  acme  3.11")] == [["acme", "3.11", "6", "█" * 20]]


def test_json_and_csv() -> None:
    data = json.loads(format_json(REPORT))
    assert data["counts"][0] == REPORT.counts[0]
    assert set(data) == {"since", "until", "app", "name", "counts", "machines", "refusals", "deletions", "outcomes"}
    rows = list(csv.reader(io.StringIO(format_csv(REPORT))))
    assert rows[0] == ["section", "app", "day", "key", "value", "machines"]
    assert ["counts", "acme", "2026-11-21", "lint", "1", "1"] in rows
    assert ["refusals", "acme", "2026-11-21", "counter_not_allowed", "2", ""] in rows
    assert ["python", "acme", "2026-11-20", "3.11", "4", "4"] in rows
    assert len(rows) == 1 + 3 + 3 + 1
