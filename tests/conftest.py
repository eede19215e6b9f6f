from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from receiver import Receiver


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI's version matrix (noxfile.py sets ``TELEMETRY_ROLLUP_TEST_DIST``) the code under test
    must be the installed wheel, in this process and in the interpreters the tests start, never a
    source tree: otherwise a file missing from the wheel would go unnoticed."""
    dist = os.environ.get("TELEMETRY_ROLLUP_TEST_DIST")
    if not dist:
        return
    import telemetry_rollup

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    here = Path(telemetry_rollup.__file__).resolve()
    child = subprocess.run(
        [sys.executable, "-c", "import telemetry_rollup; print(telemetry_rollup.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    wheels = sorted(Path(dist).glob("telemetry_rollup-*.whl"))
    problems = []
    if site not in here.parents:
        problems.append(f"telemetry_rollup is imported from {here}, not from {site}")
    if not child or Path(child).resolve() != here:
        problems.append(f"a child interpreter started from {os.getcwd()} imports {child or 'nothing'}, not {here}")
    if [w.name.split("-")[1] for w in wheels] != [telemetry_rollup.__version__]:
        problems.append(f"version {telemetry_rollup.__version__} is not the one wheel in {dist}: {wheels}")
    if problems:
        raise pytest.UsageError("the suite is not running on the installed wheel: " + "; ".join(problems))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The random order's seed, also under ``-q`` (which hides pytest-randomly's header line)."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.hasplugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"random order: replay it with --randomly-seed={seed}")


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
