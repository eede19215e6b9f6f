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

TYPE_CHECKING = False  # no typing/logging import at run time: the hot path imports this module
if TYPE_CHECKING:
    import logging

NAME = "telemetry_rollup"

_fired = False


class Log:
    def enabled(self) -> bool:
        if "logging" not in sys.modules:
            return False
        import logging

        return logging.getLogger(NAME).isEnabledFor(logging.DEBUG)

    def debug(self, msg: str, *args: object) -> None:
        if "logging" in sys.modules:
            import logging

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
