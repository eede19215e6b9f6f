"""The package as users get it: what ``python -m build`` puts in the wheel and the sdist, the
metadata, ``twine check``, and TELEMETRY.md reachable from an installed copy.

CI's version matrix (noxfile.py) builds once and sets ``TELEMETRY_ROLLUP_TEST_DIST`` to the
directory holding the sdist and the wheel it installed, so these tests check those very files;
without it they build from this source tree.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import telemetry_rollup

ROOT = Path(__file__).resolve().parent.parent
VERSION = telemetry_rollup.__version__
DIST_INFO = f"telemetry_rollup-{VERSION}.dist-info/"
SDIST_PREFIX = f"telemetry_rollup-{VERSION}/"
CLIENT_DEPENDENCIES = {"filelock", "platformdirs", "orjson", "requests"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("TELEMETRY_ROLLUP_TEST_DIST")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = sorted(dist.glob(pattern))
    return found


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    return _one(dist, f"telemetry_rollup-{VERSION}-py3-none-any.whl")


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    return _one(dist, f"telemetry_rollup-{VERSION}.tar.gz")


def _package_sources() -> set[str]:
    """The package's files in this tree: its modules and the py.typed marker."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "telemetry_rollup").rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.name == "py.typed")
    }


def test_the_wheel_holds_the_package_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped_contract = zf.read("telemetry_rollup/TELEMETRY.md")
    package = {n for n in names if not n.startswith(DIST_INFO)}
    assert not {n for n in names if n.split("/")[0] in ("tests", "benchmarks", "examples", "docs", ".ci")}
    assert "telemetry_rollup/py.typed" in package  # PEP 561: users' type checkers read the annotations
    assert package == _package_sources() | {"telemetry_rollup/TELEMETRY.md"}
    assert {n[len(DIST_INFO) :] for n in names - package} == {
        "METADATA",
        "WHEEL",
        "RECORD",
        "entry_points.txt",
        "licenses/LICENSE",
    }
    assert shipped_contract == (ROOT / "TELEMETRY.md").read_bytes()


def test_the_wheel_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = email.parser.Parser().parsestr(zf.read(DIST_INFO + "METADATA").decode())
        entry_points = zf.read(DIST_INFO + "entry_points.txt").decode()
        record = zf.read(DIST_INFO + "RECORD").decode()
    assert meta["Name"] == "telemetry-rollup" and meta["Version"] == VERSION
    assert meta["Requires-Python"] == ">=3.9"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = set(meta.get_all("Classifier") or [])
    assert {f"Programming Language :: Python :: 3.{v}" for v in range(9, 14)} <= classifiers
    assert [c for c in classifiers if c.startswith("Programming Language :: Python :: Free Threading ::")] == [
        "Programming Language :: Python :: Free Threading :: 1 - Unstable"
    ]
    # PyPI shows the README without the repository around it: no relative link to the contract
    assert "](TELEMETRY.md)" not in (meta.get_payload() or "")
    requires = meta.get_all("Requires-Dist") or []
    # for every user: no marker, or one on the Python version only (filelock's fixed releases
    # need 3.10, so 3.9 gets an older minimum); the server, its driver and the tests stay extras
    unconditional = {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]
        for r in requires
        if ";" not in r or r.split(";", 1)[1].strip().startswith("python_version")
    }
    assert unconditional == CLIENT_DEPENDENCIES
    assert set(meta.get_all("Provides-Extra") or []) >= {"server", "postgres", "test"}
    assert "telemetry-rollup = telemetry_rollup.cli:entry" in entry_points
    # RECORD is what pip installs and what `pip show -f` and importlib.metadata.files() list
    assert "telemetry_rollup/TELEMETRY.md," in record and "telemetry_rollup/py.typed," in record
    assert f"{DIST_INFO}licenses/LICENSE," in record
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(DIST_INFO + "licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()


def test_an_installed_wheel_lists_telemetry_md_among_its_files(wheel: Path, tmp_path: Path) -> None:
    """TELEMETRY.md is reachable from the installed distribution's metadata (its file list)."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    dists = [
        d for d in importlib.metadata.distributions(path=[str(target)]) if d.metadata["Name"] == "telemetry-rollup"
    ]
    assert len(dists) == 1
    found = [f for f in dists[0].files or [] if f.name == "TELEMETRY.md"]
    assert [str(f) for f in found] == ["telemetry_rollup/TELEMETRY.md"]
    assert Path(str(found[0].locate())).read_bytes() == (ROOT / "TELEMETRY.md").read_bytes()
    if os.environ.get("TELEMETRY_ROLLUP_TEST_DIST"):  # the suite itself runs on an installed wheel
        files = importlib.metadata.files("telemetry-rollup") or []
        assert "telemetry_rollup/TELEMETRY.md" in {str(f) for f in files}


def test_the_sdist_holds_the_source_tree_without_ci(sdist: Path) -> None:
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
    assert all(m.startswith(SDIST_PREFIX) for m in members)
    names = {m[len(SDIST_PREFIX) :] for m in members} - {"PKG-INFO"}
    needed_files = ("pyproject.toml", "README.md", "TELEMETRY.md", "LICENSE")
    needed_files += ("tests/conftest.py", "examples/acme_cli.py")
    for needed in needed_files:
        assert needed in names
    assert _package_sources() <= names
    assert not {n for n in names if n.startswith((".ci/", ".git/", ".venv/", ".nox/", "dist/")) or "__pycache__" in n}
    if (ROOT / ".git").exists() and shutil.which("git"):
        # built from a checkout: exactly the files git would keep (tracked or not ignored), less CI's
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        tree = {n for n in listed if n and not n.startswith(".ci/") and (ROOT / n).is_file()}
        assert names == tree


def test_twine_check_passes(wheel: Path, sdist: Path) -> None:
    pytest.importorskip("twine", reason="twine 7, the first to read Metadata-Version 2.5, needs Python 3.10")
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout
