"""Pure roll-up logic: no files, no clock (``today`` is always an argument).

Rollups map (ISO day, name) -> count. Everything here is deterministic given its inputs, which
is what lets the sender replay a step after a crash and the tests check it with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Callable

from ._codec import Rollup
from ._days import iso, parse_iso
from ._line import BUFFER_CAP, encode_line_fast
from ._names import DROPPED, MAX_COUNT

MAX_COUNTERS_PER_REPORT = 1000
MAX_REPORTS_PER_REQUEST = 50
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPORT_AGE_DAYS = 30
OUTBOX_CAP = 200  # reports


def merge(*rollups: Rollup) -> Rollup:
    out: Rollup = {}
    for r in rollups:
        for key, c in r.items():
            out[key] = out.get(key, 0) + c
    return out


def from_day_numbers(snapshot: dict[tuple[int, str], int]) -> Rollup:
    out: Rollup = {}
    for (day, name), c in snapshot.items():
        if c:
            key = (iso(day), name)
            out[key] = out.get(key, 0) + c
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
    if dropped > 0:
        key = (day, DROPPED)
        rollup[key] = rollup.get(key, 0) + dropped


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
    """One report per completed day, split so no report has more than 1000 counters or a count
    above 10^9 (a larger count spreads over several reports of the same day; receivers sum)."""
    reports: list[dict[str, Any]] = []
    for day in sorted(completed):
        pieces: list[list[tuple[str, int]]] = []
        for name, total in sorted(completed[day].items()):
            c = total
            i = 0
            while c > 0:
                part = min(c, MAX_COUNT)
                if i == len(pieces):
                    pieces.append([])
                pieces[i].append((name, part))
                c -= part
                i += 1
        for piece in pieces:
            for start in range(0, len(piece), MAX_COUNTERS_PER_REPORT):
                chunk = piece[start : start + MAX_COUNTERS_PER_REPORT]
                reports.append({"id": new_id(), "day": day, "counts": dict(chunk)})
    return reports


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
