"""The pages ``view`` wrote to the temp directory (they hold the machine id and the request
bodies): remembered in each app's directory, so that ``off`` removes them.

Below ``_control`` (``off``) and ``_view``; imports only ``_fs``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._view import AppView


#: The name a page written to the temp directory starts with; ``off`` removes only such files.
PAGE_PREFIX = "telemetry-rollup-view-"
#: In an app directory: the pages ``view`` wrote to the temp directory (they hold the machine id
#: and the request bodies), one path a line, so that ``off`` removes them too.
VIEWS_FILE = "views"


def remember(views: Sequence[AppView], path: str) -> None:
    """Record the page in the directory of each app it shows (not one that is off or unsafe:
    nothing is written there)."""
    import os

    from . import _fs

    for v in views:
        st = v.status
        if st.get("mode") == "off" or st.get("unsafe") or not os.path.isdir(st["data_dir"]):
            continue
        try:
            _fs.append_bytes(os.path.join(st["data_dir"], VIEWS_FILE), path.encode("utf-8", "replace") + b"\n")
        except OSError:
            pass


def remove_pages(app_dir: str) -> list[str]:
    """``off``: remove the pages ``view`` wrote for this app. Only a plain file in the temp
    directory whose name ``view`` gives is removed: a planted ``views`` file cannot make ``off``
    delete anything else."""
    import os
    import stat
    import tempfile

    from . import _fs

    data = _fs.read_capped(os.path.join(app_dir, VIEWS_FILE), 1 << 20) or b""
    tmp = os.path.realpath(tempfile.gettempdir())
    gone = []
    for line in data.decode("utf-8", "replace").splitlines():
        name = os.path.basename(line)
        if not name.startswith(PAGE_PREFIX) or not name.endswith(".html"):
            continue
        try:
            if os.path.realpath(os.path.dirname(line)) != tmp:  # e.g. macOS: /var is /private/var
                continue
            st = os.lstat(line)
            uid = getattr(os, "getuid", None)  # Windows has no owner uid
            if stat.S_ISREG(st.st_mode) and (uid is None or st.st_uid == uid()):
                os.unlink(line)
                gone.append(line)
        except OSError:
            pass
    return gone
