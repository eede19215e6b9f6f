"""Counter and app name rules, shared by the hot path, the codec and the server.

Kept free of third-party imports: the hot path and the exit hook load it. Free of ``re`` too: it
costs ~3 ms at ``import telemetry_rollup``; the character-set checks below accept exactly what the
patterns do (tests/test_names_fast.py pins them to the patterns).
"""

from __future__ import annotations

#: A name a host program may count.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: A name reserved for the library itself (``_dropped``, ``_invalid``, ...).
RESERVED_PATTERN = r"^_[A-Za-z0-9_.:-]{1,63}$"

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.:-")
_UPPER_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

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
    return isinstance(name, str) and 0 < len(name) <= 64 and name[0] in _ALNUM and _NAME_CHARS.issuperset(name)


def is_wire_name(name: object) -> bool:
    """True for any name that may appear in a buffer line or a report (user or reserved)."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not _NAME_CHARS.issuperset(name):
        return False
    return name[0] in _ALNUM or (name[0] == "_" and len(name) > 1)


def env_prefix_for(app: str) -> str:
    """``acme-cli`` -> ``ACME_CLI``: the prefix of the app's ``<PREFIX>_TELEMETRY`` variable."""
    return "".join(ch if ch in _UPPER_ALNUM else "_" for ch in app.upper())
