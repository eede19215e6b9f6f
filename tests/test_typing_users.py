"""The public API as a host tool's type checker sees it, from the installed package (py.typed):
typical calls type-check under ``mypy --strict`` and pyright (strict), wrong calls are reported,
and ``telemetry_rollup.configure`` keeps ``Telemetry.configure``'s exact signature."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import telemetry_rollup
from telemetry_rollup import Telemetry

CASES = Path(__file__).resolve().parent / "typecheck"


def test_configure_has_exactly_the_parameters_of_telemetry_configure() -> None:
    """Spelled out (not ``**options``) so a type checker sees them; this keeps the two from drifting."""
    module_level = list(inspect.signature(telemetry_rollup.configure).parameters.values())
    method = list(inspect.signature(Telemetry.configure).parameters.values())
    assert method[0].name == "self"
    # names, order, kinds (app positional or keyword, the rest keyword-only), defaults, annotations
    assert module_level == method[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in module_level[1:])


def test_configure_passes_every_option_through(home: Path) -> None:
    """Each keyword reaches the instance (a parameter spelled out but dropped would not show in a signature)."""
    code = """
        import json, telemetry_rollup as tr
        t = tr.configure("acme", endpoint="http://127.0.0.1:9/v1", app_version="2.0", allow=["a*"],
                         default="local", env_prefix="ACMEX", flush_interval=7, send_interval=99,
                         notice="hello", notice_url="https://example.com/n", home=HOME,
                         headers={"X-Test": "1"})
        print(json.dumps(dict(t._options, headers=t._headers, same=t is tr.configure("acme", home=HOME))))
    """
    out = subprocess.run(
        [sys.executable, "-c", inspect.cleandoc(code).replace("HOME", repr(str(home)))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {
        "endpoint": "http://127.0.0.1:9/v1",
        "app_version": "2.0",
        "allow": ["a*"],
        "default": "local",
        "env_prefix": "ACMEX",
        "flush_interval": 7.0,
        "send_interval": 99.0,
        "notice": "hello",
        "notice_url": "https://example.com/n",
        "home": str(home),
        "headers": {"X-Test": "1"},
        "same": True,
    }


def _user_project(tmp_path: Path, name: str) -> Path:
    """The case file alone in a fresh directory: no repository config, no checkout on the path."""
    target = tmp_path / name
    shutil.copy(CASES / name, target)
    return target


def _marked_lines(path: Path) -> set[int]:
    return {i for i, line in enumerate(path.read_text().splitlines(), 1) if line.rstrip().endswith("# wrong")}


def _mypy(path: Path) -> tuple[int, set[int], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", ".mypy_cache", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MYPYPATH"},
    )
    lines = {int(m.group(1)) for m in re.finditer(rf"^{re.escape(path.name)}:(\d+): error:", proc.stdout, re.M)}
    return proc.returncode, lines, proc.stdout + proc.stderr


def _pyright(path: Path) -> tuple[set[int], str]:
    (path.parent / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict"}))
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=600,
        # the pinned pyright runs its bundled copy; no look-up of newer releases
        env=dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1"),
    )
    report = json.loads(proc.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert report["summary"]["filesAnalyzed"] == 1, proc.stdout
    return {d["range"]["start"]["line"] + 1 for d in errors}, json.dumps(errors, indent=1)


def test_typical_calls_pass_mypy_strict(tmp_path: Path) -> None:
    code, lines, out = _mypy(_user_project(tmp_path, "user_code.py"))
    assert code == 0 and not lines, out


def test_wrong_calls_are_mypy_errors(tmp_path: Path) -> None:
    path = _user_project(tmp_path, "wrong_calls.py")
    code, lines, out = _mypy(path)
    assert code == 1
    assert lines == _marked_lines(path), out


def test_typical_calls_pass_pyright_strict(tmp_path: Path) -> None:
    lines, out = _pyright(_user_project(tmp_path, "user_code.py"))
    assert not lines, out


def test_wrong_calls_are_pyright_errors(tmp_path: Path) -> None:
    path = _user_project(tmp_path, "wrong_calls.py")
    lines, out = _pyright(path)
    assert lines == _marked_lines(path), out


@pytest.mark.parametrize("case", ["user_code.py", "wrong_calls.py"])
def test_case_files_are_what_the_checkers_see(case: str) -> None:
    """A marked line is a real call, so a test above cannot pass on an empty or commented-out case."""
    text = (CASES / case).read_text()
    assert "import telemetry_rollup as tr" in text
    if case == "wrong_calls.py":
        assert len(_marked_lines(CASES / case)) >= 10
