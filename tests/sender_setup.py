"""Build app directories with known data for sender tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from telemetry_rollup import _days, _store
from telemetry_rollup._codec import encode_line_fast


def day(offset: int) -> str:
    """ISO day ``offset`` days from today (UTC)."""
    return _days.iso(_days.day_of(time.time()) + offset)


def make_app(home: Path, app: str = "acme", *, endpoint: str | None, mode: str = "on") -> _store.AppStore:
    store = _store.AppStore(home / app)
    store.ensure()
    Path(store.config_file).write_text(
        json.dumps({"app": app, "endpoint": endpoint, "app_version": "1.0", "default": "on"})
    )
    Path(store.mode_file).write_text(json.dumps({"mode": mode}))
    return store


def add_lines(store: _store.AppStore, counts: dict[tuple[str, str], int], *, spill: bool = False) -> None:
    data = b"".join(encode_line_fast(d, n, c) for (d, n), c in counts.items())
    if spill:
        store.write_spill(data)
    else:
        with open(store.buffer, "ab") as f:
            f.write(data)


def totals(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, n), c in counts.items():
        out[n] = out.get(n, 0) + c
    return out
