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
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_APP_CHARS = _LOWER | frozenset("0123456789-")
_ENV_CHARS = _ALNUM | frozenset("_")

#: An app's name, which is also its directory under the data root and, through
#: :func:`env_prefix_for`, its ``<PREFIX>_TELEMETRY`` variable. Lowercase letters, digits and
#: ``-``, starting with a letter, at most 64 characters, and not a Windows device name:
#: - one directory on every disk: no ``:`` (an NTFS stream), no trailing ``.`` (Windows drops it),
#:   no two names differing only in case (macOS and Windows fold case), no ``CON``/``NUL``/...;
#: - one variable per app that a POSIX shell can set: a first letter (``9TOOL_TELEMETRY`` cannot be
#:   set), and one separator only, so ``acme-cli`` -> ``ACME_CLI`` is shared with no other name.
APP_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
#: Reserved on Windows in any case, whatever follows a dot (the rule allows no dot).
WINDOWS_DEVICE_NAMES = frozenset(
    ("con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10)))
)
#: What the app-name rule says, for error messages and the debug log.
APP_RULE = (
    "1-64 lowercase letters, digits and '-', starting with a letter, not a Windows device name"
    " (con, prn, aux, nul, com0-9, lpt0-9)"
)

INVALID = "_invalid"
DENIED = "_denied"
DROPPED = "_dropped"
CORRUPT = "_corrupt"
OVERFLOW = "_overflow"
CLAMPED = "_clamped"

#: At most this many distinct names per app per day are kept in memory; more count under ``_overflow``.
MAX_NAMES_PER_DAY = 1000
#: The largest value one (day, name) holds: in the buffer, the carry and a report, and the
#: receiver's bound for one counter in one report. A larger total is clamped to it; the excess of
#: an app's counter is added to ``(day, _clamped)``, and reserved counters (``_dropped`` and
#: ``_clamped`` included) saturate at it. So one day is one report whatever the values (a count of
#: 10**15 used to become 10**6 reports), and a value is a bounded integer everywhere.
MAX_COUNT = 10**9


def is_name(name: object) -> bool:
    """True when ``name`` may be counted by a host program."""
    return isinstance(name, str) and 0 < len(name) <= 64 and name[0] in _ALNUM and _NAME_CHARS.issuperset(name)


def is_wire_name(name: object) -> bool:
    """True for any name that may appear in a buffer line or a report (user or reserved)."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not _NAME_CHARS.issuperset(name):
        return False
    return name[0] in _ALNUM or (name[0] == "_" and len(name) > 1)


def is_app_name(app: object) -> bool:
    """True when ``app`` follows :data:`APP_PATTERN` and is not a Windows device name."""
    return (
        isinstance(app, str)
        and 0 < len(app) <= 64
        and app[0] in _LOWER
        and _APP_CHARS.issuperset(app)
        and app not in WINDOWS_DEVICE_NAMES
    )


def is_env_prefix(prefix: object) -> bool:
    """True for a ``<PREFIX>`` a POSIX shell can set as ``<PREFIX>_TELEMETRY`` (at most 64 characters)."""
    return (
        isinstance(prefix, str)
        and 0 < len(prefix) <= 64
        and (prefix[0] in _ALNUM or prefix[0] == "_")
        and not prefix[0].isdigit()
        and _ENV_CHARS.issuperset(prefix)
    )


def env_prefix_for(app: str) -> str:
    """``acme-cli`` -> ``ACME_CLI``: the prefix of the app's ``<PREFIX>_TELEMETRY`` variable."""
    return "".join(ch if ch in _UPPER_ALNUM else "_" for ch in app.upper())
