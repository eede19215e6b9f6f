"""`import telemetry_rollup` stays cheap: it loads no dependency and none of the heavier stdlib modules
(docs/benchmarks.md measures what each would cost)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("typing", "logging", "re", "datetime", "pathlib", "orjson", "filelock", "platformdirs", "requests", "json")


def test_import_loads_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import telemetry_rollup; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    loaded = set(out.split())
    assert "telemetry_rollup" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
