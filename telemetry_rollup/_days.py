"""Day keys: whole UTC days since the epoch, and their ISO form on disk and on the wire."""

from __future__ import annotations

SECONDS_PER_DAY = 86400
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal(); datetime is imported only when a day is written


def day_of(timestamp: float) -> int:
    """The UTC day number of a POSIX timestamp."""
    return int(timestamp // SECONDS_PER_DAY)


def iso(day: int) -> str:
    """Day number -> ``YYYY-MM-DD``."""
    import datetime

    return datetime.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


def parse_iso(text: str) -> int:
    """``YYYY-MM-DD`` -> day number; raises ValueError on anything else."""
    if len(text) != 10:
        raise ValueError(text)
    import datetime

    return datetime.date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
