"""Counter and app name rules, shared by the hot path, the codec and the server.

Kept free of third-party imports: the hot path and the exit hook load it.
"""

from __future__ import annotations

import re

#: A name a host program may count.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: A name reserved for the library itself (``_dropped``, ``_invalid``, ...).
RESERVED_PATTERN = r"^_[A-Za-z0-9_.:-]{1,63}$"

# fullmatch, not match: ``$`` would also accept a trailing newline.
NAME_RE = re.compile(NAME_PATTERN[1:-1])
RESERVED_RE = re.compile(RESERVED_PATTERN[1:-1])

INVALID = "_invalid"
DENIED = "_denied"
DROPPED = "_dropped"
CORRUPT = "_corrupt"
OVERFLOW = "_overflow"

#: At most this many distinct names per app per day are kept in memory; more count under ``_overflow``.
MAX_NAMES_PER_DAY = 1000
#: A single counter in one report never exceeds this (the receiver's bound).
MAX_COUNT = 10**9


def is_name(name: object) -> bool:
    """True when ``name`` may be counted by a host program."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def is_wire_name(name: object) -> bool:
    """True for any name that may appear in a buffer line or a report (user or reserved)."""
    return isinstance(name, str) and (NAME_RE.fullmatch(name) is not None or RESERVED_RE.fullmatch(name) is not None)


def env_prefix_for(app: str) -> str:
    """``acme-cli`` -> ``ACME_CLI``: the prefix of the app's ``<PREFIX>_TELEMETRY`` variable."""
    return re.sub(r"[^A-Z0-9]", "_", app.upper())
