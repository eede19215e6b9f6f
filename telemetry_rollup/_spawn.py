"""Starting the detached sender: ``python -c <bootstrap> flush --app APP --if-due --quiet``.

- **Cheap for the exiting host**: ``os.posix_spawn`` (a vfork-style clone and an exec, ~1 ms),
  not ``subprocess`` (importing it alone costs ~2 ms). Where ``posix_spawn`` is missing
  (Windows) or refuses, ``subprocess.Popen`` does the same job.
- **Detached**: a new session (``setsid``; ``DETACHED_PROCESS`` on Windows); stdin, stdout and
  stderr on the null device (stderr kept in debug mode); every descriptor the host made
  inheritable is closed in the child, so no pipe a caller waits on is held open; nice 10.
- **Nothing from the user's current directory runs** (issue 12): ``-m`` puts the cwd first on
  ``sys.path``, so a ``telemetry_rollup/`` package in a cloned repository the user runs the tool
  in would be imported. The bootstrap runs as ``-c`` code whose first statement removes the
  cwd entries ('' and '.') from ``sys.path`` and puts first the directory holding the library the
  host loaded, then changes to the app directory (the safe directory: 0700, this user's); ``-P``
  (3.11+) also keeps the cwd off ``sys.path`` from the start. Interpreter startup (``site``,
  ``.pth`` files) runs before any cwd entry is added, so nothing is imported from the cwd before
  the bootstrap's first line. The host's ``-I``/``-E``/``-s`` are passed on, so the sender
  resolves its dependencies as the host did.
- **Only a real Python**: a frozen application (``sys.frozen``) or an embedded interpreter whose
  ``sys.executable`` is not a Python binary cannot run ``-c`` code, so nothing is started; the
  next long-running process or an explicit ``flush`` sends.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BOOTSTRAP = """import os, sys
sys.path[:] = [{lib!r}] + [p for p in sys.path if p not in ("", ".")]
try:
    os.chdir({cwd!r})
except OSError:
    pass
from telemetry_rollup.cli import entry
entry()
"""


def is_python(executable: str) -> bool:
    """Whether ``executable`` looks like a Python interpreter we may pass ``-c`` to."""
    if not executable or getattr(sys, "frozen", False):
        return False
    name = os.path.basename(executable).lower()
    return name.startswith(("python", "pypy")) and os.access(executable, os.X_OK)


def sender_argv(app: str, app_dir: str) -> list[str] | None:
    """The detached sender's command line, or None where no sender can be started."""
    exe = sys.executable
    if not is_python(exe):
        return None
    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds the package the host loaded
    flags = []
    if sys.flags.isolated:
        flags.append("-I")
    else:
        if sys.flags.ignore_environment:
            flags.append("-E")
        if sys.flags.no_user_site:
            flags.append("-s")
        if sys.version_info >= (3, 11):
            flags.append("-P")
    code = _BOOTSTRAP.format(lib=lib, cwd=app_dir)
    return [exe, *flags, "-c", code, "flush", "--app", app, "--if-due", "--quiet"]


def _inheritable_fds() -> list[int]:
    """Descriptors above 2 the host made inheritable (Python makes none by default, PEP 446)."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(listing)
        except OSError:
            continue
        out = []
        for name in names:
            fd = int(name) if name.isdigit() else -1
            if fd > 2:
                try:
                    if os.get_inheritable(fd):
                        out.append(fd)
                except OSError:
                    pass  # the listing's own descriptor, closed by now
        return out
    return []


def start(
    argv: list[str], *, env: dict[str, str], cwd: str, keep_stderr: bool, subprocess_ok: bool = True
) -> int | None:
    """Start ``argv`` detached and return its pid at once (None: not started, ``posix_spawn``
    refused and ``subprocess_ok`` is False)."""
    spawn = getattr(os, "posix_spawn", None)
    if spawn is not None:
        null = os.devnull
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
        ]
        if not keep_stderr:
            actions.append((os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0))
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        try:
            return _background(int(spawn(argv[0], argv, env, file_actions=actions, setsid=True)))
        except (OSError, NotImplementedError, TypeError):
            pass  # e.g. no POSIX_SPAWN_SETSID here: subprocess knows the platform's way
    if not subprocess_ok:
        return None
    return _background(_start_subprocess(argv, env=env, cwd=cwd, keep_stderr=keep_stderr))


def _background(pid: int) -> int:
    """Nice 10 for the sender: it starts an interpreter (tens of ms of CPU) just as the tool is
    exiting, and on a busy machine must not take the CPU the tool, or the user's next command,
    needs. It is never starved (unlike SCHED_IDLE), only yields."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))
    except (AttributeError, OSError):
        pass  # Windows, or the child has gone already
    return pid


def _start_subprocess(argv: list[str], *, env: dict[str, str], cwd: str, keep_stderr: bool) -> int:
    import subprocess

    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | NEW_PROCESS_GROUP
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None if keep_stderr else subprocess.DEVNULL,
        close_fds=True,
        env=env,
        cwd=cwd if os.path.isdir(cwd) else None,
        **kwargs,
    )
    return int(proc.pid)
