"""Where data lives. Creates nothing.

Root: ``$TELEMETRY_ROLLUP_HOME`` if set, else ``platformdirs.user_state_dir("telemetry-rollup")``;
one directory per app below it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APPNAME = "telemetry-rollup"
HOME_ENV = "TELEMETRY_ROLLUP_HOME"


def _linux_state_dir(environ: Mapping[str, str]) -> str:
    # platformdirs' rule on Linux, spelled out so a CLI's exit hook does not pay its 17 ms import;
    # tests/test_paths.py pins it to platformdirs' own answer.
    base = environ.get("XDG_STATE_HOME", "").strip() or os.path.expanduser("~/.local/state")
    return os.path.join(base, APPNAME)


def data_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV)
    if home:
        return Path(home)
    if sys.platform.startswith("linux") and environ is None:
        return Path(_linux_state_dir(env))
    import platformdirs

    return Path(platformdirs.user_state_dir(APPNAME, appauthor=False))


def app_dir(app: str, root: Path | None = None) -> Path:
    return (data_root() if root is None else root) / app
