"""Day keys: whole UTC days since the epoch, and their ISO form on disk and on the wire."""

from __future__ import annotations

import datetime as _dt

SECONDS_PER_DAY = 86400
_EPOCH = _dt.date(1970, 1, 1)


def day_of(timestamp: float) -> int:
    """The UTC day number of a POSIX timestamp."""
    return int(timestamp // SECONDS_PER_DAY)


def iso(day: int) -> str:
    """Day number -> ``YYYY-MM-DD``."""
    return (_EPOCH + _dt.timedelta(days=day)).isoformat()


def parse_iso(text: str) -> int:
    """``YYYY-MM-DD`` -> day number; raises ValueError on anything else."""
    if len(text) != 10:
        raise ValueError(text)
    return (_dt.date.fromisoformat(text) - _EPOCH).days
