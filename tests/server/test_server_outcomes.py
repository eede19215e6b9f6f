"""timed() counters round-trip through the real server into the report's outcome rows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from server_helpers import Server, report_json

from telemetry_rollup.server.report import format_table, outcomes


def test_outcomes_group_derived_counters() -> None:
    counts = [
        {"app": "a", "day": "d", "name": "build", "total": 10, "machines": 1},
        {"app": "a", "day": "d", "name": "build:ok", "total": 7, "machines": 1},
        {"app": "a", "day": "d", "name": "build:error", "total": 3, "machines": 1},
        {"app": "a", "day": "d", "name": "build:error:Timeout", "total": 2, "machines": 1},
        {"app": "a", "day": "d", "name": "build:error:other", "total": 1, "machines": 1},
        {"app": "a", "day": "d", "name": "build:dur:lt1s", "total": 9, "machines": 1},
        {"app": "a", "day": "d", "name": "build:dur:ge1m", "total": 1, "machines": 1},
        {"app": "a", "day": "d", "name": "plain", "total": 4, "machines": 1},
    ]
    (row,) = outcomes(counts)
    assert row["name"] == "build" and row["calls"] == 10 and row["errors"] == 3
    assert row["error_rate"] == 0.3
    assert row["top_codes"] == [("Timeout", 2), ("other", 1)]
    assert row["durations"]["lt1s"] == 9 and row["durations"]["ge1m"] == 1 and row["durations"]["lt10ms"] == 0


def test_timed_round_trip_through_the_server(tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    try:
        env = dict(os.environ, TELEMETRY_ROLLUP_HOME=str(tmp_path / "home"), TOOL_TELEMETRY="on")
        code = f"""
            import telemetry_rollup as tr
            tr.configure("tool", endpoint={server.url + "/v1/rollups"!r})
            for i in range(10):
                try:
                    with tr.timed("build"):
                        if i % 4 == 0:
                            raise KeyError("nope")
                except KeyError:
                    pass
        """
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, check=True, timeout=60)
        subprocess.run(
            [sys.executable, "-m", "telemetry_rollup", "flush", "--app", "tool", "--include-today"],
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
        )
        report = report_json(server, "tool")
        (row,) = report["outcomes"]
        assert row["calls"] == 10 and row["ok"] == 7 and row["errors"] == 3
        assert row["top_codes"] == [["KeyError", 3]]
        assert row["durations"]["lt10ms"] == 10
        text = server.report("--app", "tool", "--days", "2").stdout
        assert "build: 10 calls; 10 with an outcome: 7 ok, 3 errors (30.0%); top codes: KeyError 3" in text
    finally:
        server.stop()


def test_table_lists_outcomes() -> None:
    from telemetry_rollup.server.report import Report

    rep = Report(
        "s",
        "u",
        None,
        [],
        {"app_version": [], "os": [], "python": []},
        [],
        [],
        outcomes(
            [
                {"app": "a", "day": "d", "name": "x", "total": 2, "machines": 1},
                {"app": "a", "day": "d", "name": "x:ok", "total": 2, "machines": 1},
            ]
        ),
    )
    assert "a x: 2 calls; 2 with an outcome: 2 ok, 0 errors (0.0%)" in format_table(rep)
