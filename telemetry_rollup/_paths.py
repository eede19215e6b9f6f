"""Where data lives. Creates nothing. Paths are plain strings (see ``_fs``).

Root: ``$TELEMETRY_ROLLUP_HOME`` if set, else ``platformdirs.user_state_dir("telemetry-rollup")``;
one directory per app below it. The root is made absolute when it is read (at ``configure()``),
so a relative ``TELEMETRY_ROLLUP_HOME`` means the directory it named then, not after a ``chdir``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

APPNAME = "telemetry-rollup"
HOME_ENV = "TELEMETRY_ROLLUP_HOME"


def _linux_state_dir(environ: Mapping[str, str]) -> str:
    # platformdirs' rule on Linux, spelled out so a CLI's exit hook does not pay its 17 ms import;
    # tests/test_paths.py pins it to platformdirs' own answer.
    base = environ.get("XDG_STATE_HOME", "").strip() or os.path.expanduser("~/.local/state")
    return os.path.join(base, APPNAME)


def data_root(environ: Mapping[str, str] | None = None) -> str:
    """The absolute data root."""
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV)
    if home:
        return os.path.abspath(home)
    if sys.platform.startswith("linux") and environ is None:
        return os.path.abspath(_linux_state_dir(env))
    import platformdirs

    return os.path.abspath(platformdirs.user_state_dir(APPNAME, appauthor=False))


def app_dir(app: str, root: str | None = None) -> str:
    return os.path.join(data_root() if root is None else root, app)
