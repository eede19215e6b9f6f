"""CI's version matrix: the built wheel, tested on every other CPython >= 3.9 found.

``.ci/run`` first runs the whole suite on its own interpreter (README's test command, editable
install), then ``nox``:

- ``build``: ``python -m build`` (the sdist, then the wheel built from that sdist) and
  ``twine check``; the sdist is unpacked for the sessions below.
- ``tests-X.Y``: for every other interpreter, a fresh venv with the built wheel and its test extras;
  the fast part of the suite (not ``slow``, not ``browser``) runs from the unpacked sdist, in a
  directory that holds no source tree: the code under test is the installed wheel
  (tests/conftest.py refuses to start otherwise), and a file missing from the sdist or the wheel
  fails here.
- ``demo``: README's first command with the wheel in place of the checkout (only its extras, not
  the test ones), from an empty directory.

Interpreters are looked up on PATH and among pyenv's builds (``$(pyenv root)/versions/3.X.Y``). A
supported version that is not found is reported on one line and skipped, never silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".nox"
DIST = WORK / "_dist"
SDIST_TREE = WORK / "_sdist"
OLDEST = (3, 9)  # requires-python
SUPPORTED = ["3.9", "3.10", "3.11", "3.12", "3.13"]  # reported when missing; any newer one found is added
#: The interpreter nox runs on already ran the whole suite (README's command) before nox.
MAIN = f"{sys.version_info[0]}.{sys.version_info[1]}"
FAST = "not slow and not browser"

nox.options.sessions = ["build", "tests", "demo"]
nox.options.error_on_missing_interpreters = False  # skip with one line (nox would fail on CI)
nox.options.download_python = "never"  # use what the machine has; nothing is downloaded
nox.options.default_venv_backend = "venv"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            return Path(out)
    return None


def _runs_as(exe: str, version: str) -> bool:
    """pyenv's shims are on PATH for every version it holds, but fail unless that one is selected."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2], sys.implementation.name)"
    try:
        out = subprocess.run([exe, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return False
    return out.stdout.split() == [version, "cpython"]


def _find_interpreters() -> dict[str, str]:
    """X.Y -> a CPython (X.Y >= 3.9): pyenv's newest X.Y.Z build, else ``pythonX.Y`` on PATH if it runs."""
    found: dict[str, str] = {}
    root = _pyenv_root()
    if root is not None and (root / "versions").is_dir():
        builds = [d for d in (root / "versions").iterdir() if re.fullmatch(r"3\.\d+\.\d+", d.name)]
        for build in sorted(builds, key=lambda d: _version_key(d.name)):  # newest patch release wins
            minor = ".".join(build.name.split(".")[:2])
            binary = build / "bin" / f"python{minor}"
            if _version_key(minor) >= OLDEST and binary.is_file():
                found[minor] = str(binary)
    for minor_number in range(OLDEST[1], 30):
        minor = f"3.{minor_number}"
        exe = shutil.which(f"python{minor}")
        if minor not in found and exe and _runs_as(exe, minor):
            found[minor] = exe
    return found


def _expose(found: dict[str, str]) -> None:
    """Put each interpreter on PATH as ``pythonX.Y`` (links in .nox/_interpreters), where nox looks."""
    links = WORK / "_interpreters"
    shutil.rmtree(links, ignore_errors=True)  # made anew: a link left from another run is no finding
    links.mkdir(parents=True)
    for minor, exe in found.items():
        (links / f"python{minor}").symlink_to(exe)
    os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


_FOUND = _find_interpreters()
_expose(_FOUND)
PYTHONS = sorted((set(SUPPORTED) | set(_FOUND)) - {MAIN}, key=_version_key)


def _wheel() -> Path:
    wheels = sorted(DIST.glob("telemetry_rollup-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {DIST} (run the build session): {wheels}")
    return wheels[0]


def _sdist_tree() -> Path:
    (tree,) = SDIST_TREE.iterdir()
    return tree


@nox.session(python=False)
def build(session: nox.Session) -> None:
    """The sdist, then the wheel from that sdist; twine checks both; the sdist is unpacked."""
    shutil.rmtree(DIST, ignore_errors=True)
    shutil.rmtree(SDIST_TREE, ignore_errors=True)
    session.run(sys.executable, "-m", "build", "--outdir", str(DIST), str(ROOT))
    artifacts = sorted(str(p) for p in DIST.iterdir())
    session.run(sys.executable, "-m", "twine", "check", "--strict", *artifacts)
    (sdist,) = DIST.glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(SDIST_TREE, filter="data")
        else:  # pragma: no cover - Python without extraction filters (our own archive, just built)
            tf.extractall(SDIST_TREE)  # noqa: S202
    session.log(f"built {', '.join(Path(a).name for a in artifacts)}")


@nox.session(python=PYTHONS, requires=["build"])
def tests(session: nox.Session) -> None:
    """The built wheel with its test extras; the fast tests, from the sdist."""
    session.install(f"{_wheel()}[test]")
    tree = _sdist_tree()
    empty = Path(session.create_tmp()) / "cwd"
    empty.mkdir(exist_ok=True)
    session.chdir(empty)  # `python -c`/`-m` put the cwd first on sys.path: no source tree may be there
    # No mypy run of the library here: .ci/run's mypy checks it once; on 3.9 pip resolves older
    # third-party stubs (types-requests) whose gaps fail --strict without any fault in the code.
    session.run(
        "python",
        "-m",
        "pytest",
        str(tree / "tests"),
        "-c",
        str(tree / "pyproject.toml"),
        "--rootdir",
        str(tree),
        "-m",
        FAST,
        "-p",
        "no:cacheprovider",
        "-q",
        env={"TELEMETRY_ROLLUP_TEST_DIST": str(DIST)},
    )


@nox.session(requires=["build"])
def demo(session: nox.Session) -> None:
    """README's first command (`pip install '.[server]' && python -m telemetry_rollup demo`), from the wheel."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^pip install '\.\[([\w,]+)\]' && (python -m telemetry_rollup .+)$", readme, re.M)
    if match is None:
        session.error("README.md has no `pip install '.[...]' && python -m telemetry_rollup ...` line")
    extras, command = match.group(1), match.group(2)
    session.install(f"{_wheel()}[{extras}]")
    empty = Path(session.create_tmp()) / "cwd"
    empty.mkdir(exist_ok=True)
    session.chdir(empty)
    session.run(*shlex.split(command))
