"""benchmarks/run.py --quick still works (a smoke run: no timing is asserted, nothing here can flake on load)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.mark.slow
def test_quick_run_fills_every_row(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = dict(os.environ, TELEMETRY_ROLLUP_HOME=str(tmp_path / "unused-home"))
    r = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = out.read_text()
    assert doc.strip() in r.stdout
    for figure in (
        "`count(name)`, one thread, mode on",
        "`count(name)`, 4 threads at once",
        "`count(name)` when mode is off",
        "`import telemetry_rollup`",
        "endpoint healthy",
        "endpoint refused",
        "endpoint never answering",
        "exit hook, 8 processes exiting at once",
        "collapse a full 256 KiB buffer",
        "flush --if-due` when nothing is due",
        "memory of a daemon counting",
    ):
        rows = [line for line in doc.splitlines() if line.startswith("| ") and figure in line]
        assert len(rows) == 1, figure
        assert "n/a" not in rows[0], rows[0]
    # Correctness checks the run makes along the way hold even in a smoke run.
    assert "totals WRONG" not in doc and "CHECK FAILED" not in doc and "FILES MADE" not in doc
    assert "Machine: " in doc and "Python " in doc
    # The user's real home was never used, and the run cleaned up after itself.
    assert not (tmp_path / "unused-home").exists()
