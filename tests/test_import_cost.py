"""`import telemetry_rollup` stays cheap: it loads no dependency and none of the heavier stdlib modules
(docs/benchmarks.md measures what each would cost)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_a_short_cli_exit_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    """The exit hook (persist, notice check, due check) must not load the sender, its transport,
    logging, datetime or any dependency: every short CLI run pays for what it imports."""
    code = (
        "import sys, atexit\n"
        # registered first, so it runs last (atexit is LIFO): after the library's exit hook
        "atexit.register(lambda: print(sorted(m for m in ('telemetry_rollup._sender', 'telemetry_rollup._transport',"
        " 'telemetry_rollup._identity', 'logging', 'datetime', 'requests', 'filelock', 'orjson', 'platformdirs')"
        " if m in sys.modules)))\n"
        "import telemetry_rollup as tr\n"
        "tr.configure('acme', endpoint='http://127.0.0.1:9/x')\n"
        "tr.count('a')\n"
    )
    env = dict(os.environ, TELEMETRY_ROLLUP_HOME=str(tmp_path), ACME_TELEMETRY="on")
    # The first run writes config.json (orjson, once per app version); every later run only appends.
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
