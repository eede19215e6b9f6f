"""The hot path: in-memory counts keyed by (UTC day, name).

``count()`` must cost about as much as a dict increment and stay exact across threads without a
lock. Each (day, name) gets an ``itertools.count`` object: ``next()`` on it is a single C call,
atomic under the GIL, so concurrent increments are never lost. Reads never reset the objects;
a baseline of what was already handed out is kept instead, so a read racing an increment
neither loses nor repeats it. Increments other than 1 (rare) take a lock.

The fast path reads no clock: ``time.time()`` alone costs 25-45 ns, as much as the rest of the
call (docs/benchmarks.md). ``_cur`` is today's dict, and a new UTC day begins (``_roll``) when
the slow path runs (any name not yet seen today), at every ``take()``, and when the background
flusher wakes, which it does at each day's end. So a count of an already-seen name made just
after midnight may land on the previous day, by at most the flusher's wake-up delay (or, with
``flush_interval=0``, until the next new name or flush).
"""

from __future__ import annotations

import itertools
import time
from _thread import allocate_lock  # not threading: a short CLI never needs to import it

from ._days import SECONDS_PER_DAY, day_of
from ._names import DENIED, INVALID, MAX_NAMES_PER_DAY, OVERFLOW, is_name

TYPE_CHECKING = False  # no typing import at run time: ``import telemetry_rollup`` must stay cheap
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Callable

#: (day number, name) -> count
Snapshot = dict[tuple[int, str], int]

_time = time.time


def _value(counter: itertools.count[int]) -> int:
    # repr is "count(N)" on every CPython version; pickling support for itertools is going away.
    return int(repr(counter)[6:-1])


class Counters:
    """Thread-safe, lock-free-on-the-fast-path counters for one app."""

    __slots__ = (
        "_base",
        "_codes",
        "_cur",
        "_cur_day",
        "_day_end",
        "_days",
        "_derived",
        "_lock",
        "_sums",
        "allow",
        "off",
        "on_new_name",
    )

    def __init__(self) -> None:
        self.off = False
        #: optional predicate: names it rejects count under ``_denied``
        self.allow: Callable[[str], bool] | None = None
        #: called (outside the fast path) the first time a name is seen on a day
        self.on_new_name: Callable[[], None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._lock = allocate_lock()
        self._days: dict[int, dict[str, itertools.count[int]]] = {}
        self._cur: dict[str, itertools.count[int]] = {}
        self._cur_day = -1
        self._day_end = 0.0  # forces the first call through the slow path
        self._base: Snapshot = {}
        self._sums: Snapshot = {}
        self._codes: dict[tuple[int, str], set[str]] = {}
        self._derived: dict[str, tuple[str, ...]] = {}

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent persists its own counts, exactly once."""
        self._reset()

    def count(self, name: str, n: int = 1, outcome: str | None = None, error_code: str | None = None) -> None:
        """Add ``n`` to ``name`` for the current UTC day. Never raises.

        With ``outcome`` ("ok" or "error") also counts ``name:ok`` or ``name:error`` and, for an
        error, ``name:error:<error_code>`` (at most 20 codes per name per day; more, or a code that
        is not a valid name, count as ``name:error:other``). Any other outcome counts only
        ``_invalid``."""
        if self.off:
            return
        try:
            if n == 1 and outcome is None:
                next(self._cur[name])
                return
        except Exception:  # noqa: S110
            pass  # a name not seen yet today (KeyError) or an unhashable one: the slow path sorts it out
        if outcome is not None:
            self.record(name, outcome, error_code, None, n)
            return
        try:
            self._slow(name, n)
        except Exception:  # noqa: S110 - nothing may reach the host program
            pass

    def record(self, name: str, outcome: str | None, error_code: str | None, seconds: float | None, n: int = 1) -> None:
        """An outcome and/or a duration of ``name``, as counters (see TELEMETRY.md). Never raises."""
        if self.off:
            return
        try:
            if outcome is not None and outcome not in ("ok", "error"):  # a tuple: an unhashable outcome is invalid too
                # A typo ("success", "OK", 1) is the caller's mistake, not a failure: it counts
                # under _invalid and touches no other counter (it used to count name:error).
                self._slow(INVALID, 1)
                return
            derived = self._derived.get(name)
            if derived is None:
                if not is_name(name):
                    self._slow(name, 1)  # counts _invalid
                    return
                # The derived names are built and checked once per name, not per call.
                derived = (f"{name}:ok", f"{name}:error", *(f"{name}:dur:{label}" for label in BUCKET_LABELS))
                if len(self._derived) < MAX_NAMES_PER_DAY:
                    self._derived[name] = derived
            if n == 1 and outcome == "ok" and seconds is not None:
                # The common case of timed(): all three counters already exist today. Look them all
                # up first, then increment, so a miss falls through to the general path untouched.
                cur = self._cur
                try:
                    a, b, c = cur[name], cur[derived[0]], cur[derived[2 + _bucket_index(seconds)]]
                except KeyError:
                    pass
                else:
                    next(a)
                    next(b)
                    next(c)
                    return
            count = self.count
            count(name, n)
            if outcome == "ok":
                count(derived[0], n)
            elif outcome is not None:
                count(derived[1], n)
                count(self._code_name(name, error_code), n)
            if seconds is not None:
                count(derived[2 + _bucket_index(seconds)])
        except Exception:  # noqa: S110 - nothing may reach the host program
            pass

    def _code_name(self, name: str, code: str | None) -> str:
        other = f"{name}:error:other"
        candidate = f"{name}:error:{code}"
        if not isinstance(code, str) or not is_name(code) or not is_name(candidate):
            return other
        with self._lock:
            day = day_of(_time())
            codes = self._codes.setdefault((day, name), set())
            if code in codes:
                return candidate
            if len(codes) >= MAX_CODES_PER_NAME:
                return other
            codes.add(code)
            return candidate

    def count_reserved(self, name: str, n: int = 1, *, now: float | None = None) -> None:
        """Count a library-reserved name (no validation, no allowlist)."""
        day = day_of(_time() if now is None else now)
        with self._lock:
            self._sums[(day, name)] = self._sums.get((day, name), 0) + n

    def _slow(self, name: object, n: object) -> None:
        new_name = False
        with self._lock:
            day = self._roll(_time())
            if type(n) is not int or n < 0 or not is_name(name):
                key, n = INVALID, 1
            else:
                key = name  # type: ignore[assignment]
                # Derived counters (build:ok, build:dur:lt1s) follow their base name's allowance.
                if self.allow is not None and not self.allow(key) and not self.allow(key.split(":", 1)[0]):
                    key = DENIED
            cur = self._cur
            if key not in cur and key[0] != "_" and len(cur) >= MAX_NAMES_PER_DAY:
                key = OVERFLOW
            if key[0] == "_":
                self._sums[(day, key)] = self._sums.get((day, key), 0) + n
            elif n == 1:
                c = cur.get(key)
                if c is None:
                    c = cur[key] = itertools.count()
                    new_name = True
                next(c)
            else:
                if key not in cur:
                    cur[key] = itertools.count()
                    new_name = True
                self._sums[(day, key)] = self._sums.get((day, key), 0) + n
        if new_name and self.on_new_name is not None:
            self.on_new_name()

    def _roll(self, now: float) -> int:
        """Make ``now``'s UTC day the current one (call holding the lock); returns its number."""
        day = day_of(now)
        if day != self._cur_day:
            self._cur_day = day
            self._cur = self._days.setdefault(day, {})
            self._day_end = (day + 1) * SECONDS_PER_DAY
        return day

    def roll(self) -> float:
        """Begin a new day's counts if the UTC day changed; returns the seconds until the next change."""
        with self._lock:
            now = _time()
            if self._cur_day != -1:
                self._roll(now)
            return max(0.001, (day_of(now) + 1) * SECONDS_PER_DAY - now)

    def take(self) -> Snapshot:
        """Hand out everything counted since the last take (and forget days older than yesterday)."""
        out: Snapshot = {}
        with self._lock:
            if self._cur_day != -1:
                self._roll(_time())
            sums, self._sums = self._sums, {}
            for key, n in sums.items():
                out[key] = out.get(key, 0) + n
            for day, names in list(self._days.items()):
                for name, c in list(names.items()):
                    v = _value(c)
                    b = self._base.get((day, name), 0)
                    if v > b:
                        out[(day, name)] = out.get((day, name), 0) + v - b
                        self._base[(day, name)] = v
                if day < self._cur_day - 1:
                    # No thread can still hold these objects: the fast path only sees today's dict.
                    del self._days[day]
                    for name in names:
                        self._base.pop((day, name), None)
                        self._codes.pop((day, name), None)
        return out

    def restore(self, snapshot: Snapshot) -> None:
        """Give back counts that could not be persisted, so a later flush retries them."""
        with self._lock:
            for key, n in snapshot.items():
                self._sums[key] = self._sums.get(key, 0) + n

    def clear(self) -> None:
        """Forget everything (the user switched telemetry off)."""
        with self._lock:
            self._days.clear()
            self._cur = {}
            self._cur_day = -1
            self._day_end = 0.0
            self._base.clear()
            self._sums.clear()
            self._codes.clear()

    def pending(self) -> bool:
        """True when a take() would hand out something (cheap enough for the exit hook)."""
        with self._lock:
            if self._sums:
                return True
            return any(
                _value(c) > self._base.get((day, name), 0)
                for day, names in self._days.items()
                for name, c in names.items()
            )


#: Upper bounds of the duration buckets, in seconds, and their names (TELEMETRY.md documents them).
DURATION_BUCKETS = ((0.01, "lt10ms"), (0.1, "lt100ms"), (1.0, "lt1s"), (10.0, "lt10s"), (60.0, "lt1m"))
MAX_CODES_PER_NAME = 20


BUCKET_LABELS = (*(label for _, label in DURATION_BUCKETS), "ge1m")


def _bucket_index(seconds: float) -> int:
    for i, (bound, _) in enumerate(DURATION_BUCKETS):
        if seconds < bound:
            return i
    return len(DURATION_BUCKETS)


def duration_bucket(seconds: float) -> str:
    return BUCKET_LABELS[_bucket_index(seconds)]


def merge(into: Snapshot, more: Iterable[tuple[tuple[int, str], int]]) -> None:
    for key, n in more:
        into[key] = into.get(key, 0) + n
