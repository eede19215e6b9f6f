"""What a persist writes besides the counts: the notice, the app's config, the run's facts.

- **The notice** goes to file descriptor 2, the process's real standard error, never into
  ``sys.stderr``: a host may have redirected that for its own use (``redirect_stderr``, click's
  ``CliRunner``, pytest's capture) and the person would never see it (issue 12). It is recorded
  as shown (the ``notice`` file) only once all of it was written; a process without a writable
  standard error has not shown it, and nothing is sent until one has. Called under the buffer
  lock, so exactly one process shows it.
- **config.json** is written only when its bytes change (once per app version), without a JSON
  library (``_flat``); a short CLI's run compares and moves on.
- **The run's facts** (``_run:tty`` or ``_run:script``, ``_run:ci``), once per process.
"""

from __future__ import annotations

import os
import sys
import time

from . import _flat, _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ._consent import Decision
    from ._store import AppStore


def write_notice(text: str, avoid: tuple[int, int] | None) -> bool:
    """Write ``text`` to fd 2; True only when all of it was written. Not when the process has no
    standard error (started with fd 2 closed: ``sys.__stderr__`` is None), nor when fd 2 is now
    ``avoid`` (our own lock file, which took the number after the host closed fd 2)."""
    if sys.__stderr__ is None:
        return False
    try:
        st = os.fstat(2)
        if avoid is not None and (st.st_dev, st.st_ino) == avoid:
            return False
        _fs.write_all(2, (text + "\n").encode("utf-8", "replace"))
    except OSError:
        return False
    return True


def show_notice(store: AppStore, text: str) -> bool:
    """Under the buffer lock: show the notice unless it was shown; True when this call showed it."""
    if os.path.lexists(store.notice_file):
        return False
    try:
        st = os.stat(store.buffer_lock)
        ours: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        ours = None
    if not write_notice(text, ours):
        return False
    _fs.atomic_write(store.notice_file, str(int(time.time())).encode())
    return True


def maybe_notice(
    store: AppStore, decision: Decision, app: str, options: Mapping[str, Any], *, authenticates: bool
) -> bool:
    """Under the buffer lock: the first persist of an app on by default shows the notice. True
    when this call showed it."""
    if decision.source != "default" or decision.mode != "on":
        return False
    from ._consent import notice_text

    text = notice_text(
        app, options["env_prefix"], options["notice"], options["notice_url"], authenticates=authenticates
    )
    if show_notice(store, text):
        return True
    if not os.path.lexists(store.notice_file):
        from ._log import log

        log.debug("the notice could not be written to standard error: not shown, nothing is sent")
    return False


def config_bytes(app: str, options: Mapping[str, Any], *, authenticates: bool) -> bytes:
    wanted = {
        "app": app,
        "endpoint": options["endpoint"],
        "app_version": options["app_version"],
        "allow": options["allow"],
        "default": options["default"],
        "env_prefix": options["env_prefix"],
        "send_interval": options["send_interval"],
        "notice_url": options["notice_url"],
    }
    if authenticates:
        # Only the fact that the app authenticates (so a 401 keeps reports), never a value.
        wanted["auth_headers"] = True
    return _flat.dumps(wanted)


def write_config(store: AppStore, data: bytes) -> None:
    from ._store import MAX_SMALL_FILE

    if _fs.read_capped(store.config_file, MAX_SMALL_FILE) != data:
        _fs.atomic_write(store.config_file, data)


def add_run_facts(snap: dict[Any, int], environ: Mapping[str, str], now: float) -> None:
    """Add the run's facts to a snapshot of counts, under today's key (once per process)."""
    from ._days import day_of

    day = day_of(now)
    for name in run_facts(environ):
        snap[(day, name)] = snap.get((day, name), 0) + 1


def run_facts(environ: Mapping[str, str]) -> list[str]:
    """Interactive or not, CI or not: counted once per process that records anything."""
    from ._due import is_ci

    try:
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
    except Exception:
        interactive = False
    facts = ["_run:tty" if interactive else "_run:script"]
    if is_ci(environ):
        facts.append("_run:ci")
    return facts
