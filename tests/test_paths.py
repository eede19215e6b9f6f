"""``_paths`` against platformdirs: the Linux state-directory rule is spelled out in ``_paths``
(platformdirs costs a short CLI's exit ~17 ms to import), so every case of it is pinned here to
platformdirs' own answer, run in a fresh interpreter with exactly the environment given.

The rule is the XDG specification's, which current platformdirs follows (an ``XDG_STATE_HOME``
that is not an absolute path as written is ignored; a relative ``HOME`` means the account's home).
Older platformdirs releases (the newest for Python 3.9 is 4.4) took a relative or blank-padded
value; there the library keeps the specification's answer, and the test checks that it is
platformdirs' answer with the value it should have ignored left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the spelled-out rule is Linux's")

CASES = [
    {},
    {"XDG_STATE_HOME": "/x/state"},
    {"XDG_STATE_HOME": "/x/state/"},
    {"XDG_STATE_HOME": ""},
    {"XDG_STATE_HOME": "  "},
    {"XDG_STATE_HOME": "rel/state"},  # relative: ignored (it used to be taken, relative to the cwd)
    {"XDG_STATE_HOME": "./state"},
    {"XDG_STATE_HOME": " /x/state"},  # not absolute as written: ignored, not stripped
    {"HOME": "/home/someone/"},
    {"HOME": "/"},
    {"HOME": "relative-home"},  # a relative HOME: the account's home directory
    {"HOME": "relative-home", "XDG_STATE_HOME": "/x/state"},
]

PROBE = """
import json, os, platformdirs
from telemetry_rollup import _paths
print(json.dumps({
    "ours": _paths._linux_state_dir(os.environ),
    "root": _paths.data_root(),
    "platformdirs": platformdirs.user_state_dir("telemetry-rollup", appauthor=False),
}))
"""


@pytest.mark.parametrize("env", CASES, ids=lambda e: ",".join(f"{k}={v!r}" for k, v in e.items()) or "unset")
def test_the_linux_default_root_is_platformdirs_rule(env: dict[str, str], tmp_path: object) -> None:
    full = {k: v for k, v in os.environ.items() if k not in ("XDG_STATE_HOME", "TELEMETRY_ROLLUP_HOME")}
    full.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, cwd=str(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert os.path.isabs(got["ours"]) and not got["ours"].startswith(str(tmp_path))
    assert got["root"] == got["ours"]
    if got["ours"] != got["platformdirs"]:
        # an older platformdirs that used a value the specification says to ignore
        ignored = {k for k, v in env.items() if not v.startswith("/")}
        assert ignored, f"platformdirs {got['platformdirs']!r}, ours {got['ours']!r}"
        for k in ignored:
            full.pop(k)
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], env=full, cwd=str(tmp_path), capture_output=True, text=True, timeout=60
        )
        assert json.loads(proc.stdout)["platformdirs"] == got["ours"]


def test_the_root_off_linux_is_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given an environment explicitly (as off Linux), the root comes from platformdirs itself."""
    import platformdirs

    from telemetry_rollup import _paths

    assert _paths.data_root({}) == os.path.abspath(platformdirs.user_state_dir("telemetry-rollup", appauthor=False))
    assert _paths.data_root({"TELEMETRY_ROLLUP_HOME": "rel"}) == os.path.abspath("rel")
