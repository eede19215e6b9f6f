"""The library's logger, without importing logging (~5 ms) on paths that do not need it.

A host that never imported logging configured no handler, so there is nothing to log to; debug
mode (TELEMETRY_ROLLUP_DEBUG=1) imports logging and installs one.

Also the exit path's test checkpoints: with ``TELEMETRY_ROLLUP_TEST_SIGTERM_AT=<step>`` in the
environment, the process sends itself SIGTERM the first time it reaches ``<step>``, so the tests
can interrupt each step deterministically (``_lifecycle`` lists the steps). Unset, a checkpoint
is one environment lookup (well under a microsecond; a persist passes four).
"""

from __future__ import annotations

import os
import sys
import time
from _thread import allocate_lock

TYPE_CHECKING = False  # no typing/logging import at run time: the hot path imports this module
if TYPE_CHECKING:
    import logging
    from typing import Any

NAME = "telemetry_rollup"

_fired = False

#: How long a host's ``os.fork()`` waits for an import the library is making in another thread.
FORK_WAIT = 1.0
#: one lock per import site, so a first count never waits for the request thread's import
_GUARDED = ("lifecycle", "requests")
_guards = {name: allocate_lock() for name in _GUARDED}
_held: list[Any] = []


def import_guard(name: str) -> Any:
    """The lock held while the library imports modules lazily in a thread the host may fork
    beside: ``"lifecycle"`` at a first count, ``"requests"`` in the request thread. The fork
    hook's *before* step takes them all, so a fork waits (at most ``FORK_WAIT`` in all) for such
    an import to finish: a child forked in the middle of one finds the module's import lock held
    by a thread that does not exist there, and its next import of that module (or of one that
    imports it) blocks forever. (Looked up at each call: the child gets new locks.)"""
    return _guards[name]


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT
    for name in _GUARDED:
        lock = _guards[name]
        if lock.acquire(True, max(0.0, deadline - time.monotonic())):
            _held.append(lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    global _guards
    _guards = {name: allocate_lock() for name in _GUARDED}
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def _logging() -> Any:
    """The ``logging`` module if the host has fully imported it, else None. Never an import
    statement: after a fork, a module that another thread of the parent was importing (its
    module lock held by a thread that does not exist in the child) would block the child forever
    at ``import logging``; ``requests`` imports it from the library's own request thread."""
    mod = sys.modules.get("logging")
    if mod is None or getattr(getattr(mod, "__spec__", None), "_initializing", False):
        return None
    return mod if hasattr(mod, "getLogger") and hasattr(mod, "DEBUG") else None


class Log:
    def enabled(self) -> bool:
        logging = _logging()
        if logging is None:
            return False
        return bool(logging.getLogger(NAME).isEnabledFor(logging.DEBUG))

    def debug(self, msg: str, *args: object) -> None:
        logging = _logging()
        if logging is not None:
            logging.getLogger(NAME).debug(msg, *args)


log = Log()


def debug_formatter() -> logging.Formatter:
    """The debug log's formatter (``TELEMETRY_ROLLUP_DEBUG=1``, on stderr): each line through
    ``_format.printable``, as everything the command line prints, since a logged body or path may
    hold a value read from disk."""
    import logging

    class Escaping(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            from ._format import printable

            return printable(super().format(record))

    return Escaping("telemetry_rollup: %(message)s")


def debug_enabled() -> bool:
    """TELEMETRY_ROLLUP_DEBUG is set: log every request and internal error to stderr."""
    return os.environ.get("TELEMETRY_ROLLUP_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def setup_debug() -> None:
    """In debug mode, a handler on the library's logger (stderr); otherwise nothing, no import."""
    if not debug_enabled():
        return
    import logging

    logger = logging.getLogger(NAME)
    if not any(getattr(h, "_telemetry_rollup", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(debug_formatter())
        handler._telemetry_rollup = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


def step(name: str) -> None:
    """A point of the exit path a test may interrupt (see the module docstring)."""
    global _fired
    if not _fired and os.environ.get("TELEMETRY_ROLLUP_TEST_SIGTERM_AT") == name:
        _fired = True  # once per process
        os.kill(os.getpid(), 15)  # SIGTERM; the signal module is not loaded for this
