"""Day keys: whole UTC days since the epoch, and their ISO form on disk and on the wire."""

from __future__ import annotations

SECONDS_PER_DAY = 86400
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal(); datetime is imported only when a day is written


def day_of(timestamp: float) -> int:
    """The UTC day number of a POSIX timestamp."""
    return int(timestamp // SECONDS_PER_DAY)


def iso(day: int) -> str:
    """Day number -> ``YYYY-MM-DD``, by integer arithmetic (the proleptic Gregorian calendar's
    civil-from-days conversion): the exit hook writes days and must not import datetime.
    A property test pins it to ``datetime.date``."""
    z = day + 719468  # days since 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return f"{y:04d}-{m:02d}-{d:02d}"


def today_iso(now: float) -> str:
    """The ISO UTC day of a POSIX timestamp."""
    return iso(day_of(now))


def parse_iso(text: str) -> int:
    """``YYYY-MM-DD`` -> day number; raises ValueError on anything else."""
    if len(text) != 10:
        raise ValueError(text)
    import datetime

    return datetime.date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
