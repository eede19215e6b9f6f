"""The cap on distinct counter names per app and UTC day, held in the ``names`` ledger.

At most ``cap`` distinct names are stored per app and day; the counts of later names are kept,
folded into :data:`FOLDED_NAME`, and the names folded are counted under the refusal reason
``names_over_cap``. The cap holds under concurrency: a request bringing names the ledger does
not hold locks the day's ``name_days`` row first (PostgreSQL ``FOR UPDATE``; SQLite's writer
holds the database), so two such requests take turns. A request whose names are all known
costs no query (:class:`KnownNames`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from telemetry_rollup.server.db import IGNORE, Dialect, Executor, insert, select_by_keys
from telemetry_rollup.server.schema import NAME_DAYS, NAMES

#: Counts of names beyond the per-app per-day cap are stored under this name. It cannot be a
#: counter name on the wire (parentheses and a space), so no client can send it.
FOLDED_NAME = "(other names)"
#: The default cap on distinct counter names stored per app and UTC day (config ``limits``).
NAMES_PER_APP_DAY = 1000


class KnownNames:
    """Names this process has seen stored per (app, day): a positive cache, so a request whose
    names are all known costs no query for the cap. Names leave the ledger only when their day
    is pruned, after it can receive no report, so an entry is never stale for a day still open;
    the cache is bounded and simply cleared when full."""

    def __init__(self, limit: int = 200_000) -> None:
        self._known: dict[tuple[str, str], set[str]] = {}
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()

    def missing(self, app: str, day: str, names: set[str]) -> set[str]:
        with self._lock:
            return names - self._known.get((app, day), set())

    def add(self, app: str, day: str, names: set[str]) -> None:
        with self._lock:
            if self._size + len(names) > self._limit:
                self._known.clear()
                self._size = 0
            known = self._known.setdefault((app, day), set())
            before = len(known)
            known |= names
            self._size += len(known) - before


def admitted(
    tx: Executor, dialect: Dialect, known: KnownNames, cap: int, app: str, names_by_day: Mapping[str, set[str]]
) -> dict[str, set[str]]:
    """Per day, the names of ``names_by_day`` that may be stored (admitting new ones into the
    ledger while there is room)."""
    allowed: dict[str, set[str]] = {}
    for day in sorted(names_by_day):
        names = names_by_day[day]
        missing = known.missing(app, day, names)
        if not missing:
            allowed[day] = names
            continue
        # Lock the day's row first (PostgreSQL: FOR UPDATE), so two requests bringing new
        # names for the same app and day take turns and the cap holds exactly.
        insert(tx, dialect, NAME_DAYS, [(app, day, 0)], IGNORE)
        sql = "SELECT n FROM name_days WHERE app = ? AND day = ?" + dialect.for_update  # noqa: S608 - a constant
        n = int(tx.execute(sql, (app, day)).fetchall()[0][0])
        keys = [(x,) for x in sorted(missing)]
        rows = select_by_keys(tx, dialect, NAMES, ["name"], ["name"], keys, "app = ? AND day = ?", (app, day))
        found = {str(r[0]) for r in rows}
        fresh = sorted(missing - found)
        admit = fresh[: max(0, cap - n)]
        if admit:
            insert(tx, dialect, NAMES, [(app, day, x) for x in admit])
            tx.execute("UPDATE name_days SET n = n + ? WHERE app = ? AND day = ?", (len(admit), app, day))
        allowed[day] = (names - missing) | found | set(admit)
        # Only names already in the ledger are cached: this transaction may still roll back.
        known.add(app, day, (names - missing) | found)
    return allowed


def fold(counts: Mapping[str, int], allowed: set[str]) -> dict[str, int]:
    """``counts`` with the names outside ``allowed`` summed under :data:`FOLDED_NAME`. Pure."""
    kept = {name: v for name, v in counts.items() if name in allowed}
    if len(kept) < len(counts):
        kept[FOLDED_NAME] = sum(v for name, v in counts.items() if name not in allowed)
    return kept


def folded_names(counts: Mapping[str, int], stored: Sequence[str] | Mapping[str, int]) -> int:
    """How many names of ``counts`` were folded (0 when none)."""
    return len(counts) - len(stored) + 1 if FOLDED_NAME in stored else 0
