"""Pure roll-up logic: no files, no clock (``today`` is always an argument).

Rollups map (ISO day, name) -> count. Everything here is deterministic given its inputs, which
is what lets the sender replay a step after a crash and the tests check it with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Callable

from ._codec import Rollup, add_count
from ._days import iso, parse_iso
from ._line import BUFFER_CAP, encode_line_fast
from ._names import DROPPED, MAX_COUNT

MAX_COUNTERS_PER_REPORT = 1000
MAX_REPORTS_PER_REQUEST = 50
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPORT_AGE_DAYS = 30
OUTBOX_CAP = 200  # reports


def merge(*rollups: Rollup) -> Rollup:
    """The sum of ``rollups``, each (day, name) clamped to MAX_COUNT (excess under ``_clamped``)."""
    out: Rollup = {}
    for r in rollups:
        for (day, name), c in r.items():
            add_count(out, day, name, c)
    return out


def from_day_numbers(snapshot: dict[tuple[int, str], int]) -> Rollup:
    """In-memory counts (day numbers, any size) -> a rollup of clamped values, ready to encode."""
    out: Rollup = {}
    for (day, name), c in snapshot.items():
        if c:
            add_count(out, iso(day), name, c)
    return out


def split_completed(
    rollup: Rollup, *, today: str, include_today: bool = False
) -> tuple[dict[str, dict[str, int]], Rollup]:
    """Separate completed days (before ``today``; with ``include_today`` today too) from the rest.

    Days after ``today`` (a clock that jumped back) stay in the remainder until they are past.
    """
    completed: dict[str, dict[str, int]] = {}
    remainder: Rollup = {}
    for (day, name), c in rollup.items():
        if c <= 0:
            continue
        if day < today or (include_today and day == today):
            completed.setdefault(day, {})[name] = completed.get(day, {}).get(name, 0) + c
        else:
            remainder[(day, name)] = c
    return completed, remainder


def add_dropped(rollup: Rollup, dropped: int, day: str) -> None:
    """Record ``dropped`` lost counts under ``(day, _dropped)``, which saturates at MAX_COUNT."""
    if dropped > 0:
        add_count(rollup, day, DROPPED, dropped)


def _line(day: str, name: str, c: int) -> bytes:
    return encode_line_fast(day, name, c)


def fit_to_cap(rollup: Rollup, foreign: Sequence[bytes], *, cap: int = BUFFER_CAP, today: str) -> tuple[bytes, int]:
    """Encode ``rollup`` (one line per day x name) plus ``foreign`` lines within ``cap`` bytes.

    When it does not fit, the oldest days go first, then foreign lines, then names of the newest
    day. What was dropped is added under ``_dropped`` (on the newest day kept, else ``today``), so
    the receiver learns that loss happened. Returns the bytes and the number of counts dropped.
    """
    rollup = dict(rollup)
    foreign = list(foreign)
    dropped = 0

    def encoded() -> bytes:
        body = b"".join(_line(d, n, c) for (d, n), c in sorted(rollup.items()))
        return body + b"".join(f + b"\n" for f in foreign)

    def with_dropped() -> bytes:
        if dropped:
            days = sorted({d for d, _ in rollup})
            add_dropped(rollup, dropped, days[-1] if days else today)
        return encoded()

    data = encoded()
    if len(data) <= cap:
        return data, 0
    # Reserve room for the _dropped line itself.
    budget = cap - len(_line(today, DROPPED, MAX_COUNT * 1000))
    sizes: dict[str, int] = {}
    for (d, n), c in rollup.items():
        sizes[d] = sizes.get(d, 0) + len(_line(d, n, c))
    total = sum(sizes.values()) + sum(len(f) + 1 for f in foreign)
    days = sorted(sizes)
    for d in days[:-1]:
        if total <= budget:
            break
        for key in [k for k in rollup if k[0] == d]:
            dropped += rollup.pop(key)
        total -= sizes[d]
    while foreign and total > budget:
        f = foreign.pop(0)
        total -= len(f) + 1
        dropped += 1  # at least one count was in it; its exact value is a newer format's secret
    if total > budget:
        for key in sorted(rollup, key=lambda k: (k[1] == DROPPED, k), reverse=True):
            if total <= budget:
                break
            if key[1] == DROPPED:
                continue
            c = rollup.pop(key)
            dropped += c
            total -= len(_line(key[0], key[1], c))
    return with_dropped(), dropped


def make_reports(completed: dict[str, dict[str, int]], new_id: Callable[[], str]) -> list[dict[str, Any]]:
    """One report per completed day (split only so no report has more than 1000 counters).

    Values are clamped to MAX_COUNT first (they already are when they come from the buffer or the
    carry), so the number of reports depends on the number of names, never on the values: a count
    of 10**15 is one counter of 10**9 plus ``_clamped``, not 10**6 reports."""
    reports: list[dict[str, Any]] = []
    for day in sorted(completed):
        clamped: Rollup = {}
        for name, c in completed[day].items():
            if c > 0:
                add_count(clamped, day, name, c)
        items = sorted((name, c) for (_, name), c in clamped.items())
        for start in range(0, len(items), MAX_COUNTERS_PER_REPORT):
            chunk = items[start : start + MAX_COUNTERS_PER_REPORT]
            reports.append({"id": new_id(), "day": day, "counts": dict(chunk)})
    return reports


def reserved_only(report: dict[str, Any]) -> bool:
    """True for a report holding only the library's own counters (``_dropped``, ``_run:tty``...)."""
    return all(name[0] == "_" for name in report["counts"])


def choose_dropped(reports: Sequence[dict[str, Any]], *, cap: int = OUTBOX_CAP) -> list[dict[str, Any]]:
    """The reports to drop so that at most ``cap`` remain: reports of reserved counters only go
    first, then the oldest days (ties by id, so the choice is deterministic).

    Never a report with an app's counts while a reserved-only one is kept: those hold what earlier
    drops recorded (``_dropped``), and dropping them loses nothing the caller does not re-record
    (their totals go to today's ``_dropped``), while real counts are what the tool asked for."""
    excess = len(reports) - max(0, cap)
    if excess <= 0:
        return []
    ranked = sorted(reports, key=lambda r: (not reserved_only(r), r["day"], r["id"]))
    return ranked[:excess]


def expired(day: str, *, today: str, max_age_days: int = MAX_REPORT_AGE_DAYS) -> bool:
    return parse_iso(day) < parse_iso(today) - max_age_days


def pack_requests(
    sizes: Sequence[int],
    *,
    overhead: int,
    max_reports: int = MAX_REPORTS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[int]]:
    """Group report indexes into requests of at most ``max_reports`` and ``max_bytes``.

    ``sizes`` are the encoded sizes of the reports; ``overhead`` is the size of the rest of the
    body. A report too large for any request on its own is returned alone (the receiver answers
    413 and the client drops it as rejected, rather than retrying forever).
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    used = overhead
    for i, size in enumerate(sizes):
        extra = size + 1  # the comma
        if cur and (len(cur) >= max_reports or used + extra > max_bytes):
            batches.append(cur)
            cur, used = [], overhead
        cur.append(i)
        used += extra
    if cur:
        batches.append(cur)
    return batches


def totals(reports: Iterable[dict[str, Any]]) -> int:
    return sum(sum(r["counts"].values()) for r in reports)
