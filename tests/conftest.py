from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from receiver import Receiver


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data root; the real one is never touched."""
    home = tmp_path / "trhome"
    monkeypatch.setenv("TELEMETRY_ROLLUP_HOME", str(home))
    for var in ("DO_NOT_TRACK", "TELEMETRY_ROLLUP_DEBUG", "CI"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    return _isolated_home


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
