"""The library's logger, without importing logging (~5 ms) on paths that do not need it.

A host that never imported logging configured no handler, so there is nothing to log to; debug
mode (TELEMETRY_ROLLUP_DEBUG=1) imports logging and installs one.
"""

from __future__ import annotations

import sys

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
