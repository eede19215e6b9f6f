"""The library's logger, without importing logging (~5 ms) on paths that do not need it.

A host that never imported logging configured no handler, so there is nothing to log to; debug
mode (TELEMETRY_ROLLUP_DEBUG=1) imports logging and installs one.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # no typing/logging import at run time: the hot path imports this module
if TYPE_CHECKING:
    import logging

NAME = "telemetry_rollup"


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
