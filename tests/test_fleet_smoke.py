"""benchmarks/fleet.py at a small N still works end to end (a smoke run: it checks its own totals
and distinct machines against what it sent and exits 1 if they differ; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FLEET = Path(__file__).resolve().parent.parent / "benchmarks" / "fleet.py"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_fleet_smoke(backend: str, tmp_path: Path) -> None:
    if backend == "postgres" and not os.environ.get("TEST_POSTGRES_URL"):
        pytest.skip("TEST_POSTGRES_URL is not set (run .ci/postgres.sh)")
    args = ["--machines", "150", "--days", "4", "--http", "20", "--workers", "2", "--backend", backend, "--json"]
    r = subprocess.run(
        [sys.executable, str(FLEET), *args, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CHECK FAILED" not in r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["backend"] == ("SQLite" if backend == "sqlite" else "PostgreSQL")
    assert result["machine_days"] > 20 + 150 * 4 * 0.1  # the HTTP sample and at least the daily machines
    assert result["workers"] == 2 and result["reports_per_s_per_worker"] > 0
    assert result["dashboard_kb"] > 0 and result["size_mb"] > 0
    table = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 2  # the header and one row
    assert list(tmp_path.iterdir()) == []  # the SQLite file was removed with its directory
