"""The public surface: pinned, light to import, silent."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_py

import telemetry_rollup


def test_public_surface_is_pinned() -> None:
    assert telemetry_rollup.__all__ == [
        "SendResult",
        "Telemetry",
        "__version__",
        "configure",
        "count",
        "flush",
        "send",
        "status",
        "timed",
    ]


def test_import_loads_no_dependency_and_creates_nothing(home: Path) -> None:
    out = run_py(
        """
        import sys, _thread, telemetry_rollup as tr
        tr.count("before")
        print(sorted(m for m in ("filelock", "orjson", "platformdirs", "requests", "urllib3") if m in sys.modules))
        print(_thread._count())  # threads started by any means, raw ones included
        """
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "0"
    assert not home.exists()


def test_counts_before_configure_are_kept_and_a_cli_run_persists_them(home: Path) -> None:
    proc = run_py(
        """
        import sys, telemetry_rollup as tr
        tr.count("early", 2)
        tr.configure("acme", endpoint="http://127.0.0.1:9/x", app_version="1.0")
        tr.count("build"); tr.count("build"); tr.count("not valid")
        print("host output")
        print(sorted(m for m in ("filelock", "orjson", "platformdirs", "requests") if m in sys.modules))
        """
    )
    assert proc.stdout == "host output\n[]\n"  # nothing else on stdout, no dependency loaded
    lines = [json.loads(x) for x in (home / "acme" / "buffer.jsonl").read_text().splitlines()]
    got = {x["n"]: x["c"] for x in lines}
    assert got == {"early": 2, "build": 2, "_invalid": 1, "_run:script": 1}  # one run fact per process
    assert json.loads((home / "acme" / "config.json").read_text())["app_version"] == "1.0"
    assert "acme collects anonymous usage counts" in proc.stderr  # the notice, on stderr, once
    assert "acme collects" not in run_py('import telemetry_rollup as tr; tr.configure("acme"); tr.count("x")').stderr


def test_two_instances_share_nothing(home: Path) -> None:
    a = telemetry_rollup.Telemetry("app-a", flush_interval=0)
    b = telemetry_rollup.Telemetry("app-b", flush_interval=0)
    a.count("x")
    b.count("y", 2)
    a.flush()
    b.flush()
    assert (
        "x" in (home / "app-a" / "buffer.jsonl").read_text()
        and "y" not in (home / "app-a" / "buffer.jsonl").read_text()
    )
    assert '"c":2' in (home / "app-b" / "buffer.jsonl").read_text()


def test_invalid_configuration_never_raises_and_records_nothing(home: Path) -> None:
    t = telemetry_rollup.Telemetry()
    t.configure("bad app name!", default="on")
    t.configure("acme", default="sometimes")
    t.count("x")
    t.flush()
    assert not home.exists()
