"""``export``: which stored daily totals go to an OTLP endpoint, and the marks that send each once.

The unit is one app's day: its counters' totals per app version
(:meth:`~telemetry_rollup.server.store.SQLStore.daily_totals`, which sum to the report's totals),
sent in one request and marked in the server database right after the endpoint answered 2xx, so a
later run never sends it to that endpoint again. A day is sent only once it is closed,
:data:`CLOSED_AFTER_DAYS` days old by default: the server refuses reports for older days
(``models.MAX_DAYS_OLD``), so the totals sent are final and equal the report's; ``settle`` sends
days sooner, and reports that reach the server after their day was sent are then counted
(:func:`late`) but never sent.

Two exports to one endpoint at once would both send: a run claims the endpoint first (a row with
an expiry, renewed after every request), and a second run gives up with one line.

This module reads and writes through the store's connections but owns its two tables,
``export_days`` and ``export_claims``, created on first use (the server's schema version does not
cover them: neither ``serve`` nor ``report`` reads them). The choice of days (:func:`due`) and the
shape of what is sent (:func:`batches`) are pure; the sending is ``otlp.py``'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit

from telemetry_rollup.server.store import SQLStore, StoreError

#: A day is closed this many days after it: the server refuses reports more than 35 days old
#: (models.MAX_DAYS_OLD, pinned by a test; not imported here, it would load pydantic).
CLOSED_AFTER_DAYS = 36
#: How long a claim on an endpoint holds without being renewed (a run renews it per request).
CLAIM_SECONDS = 600
NS_PER_DAY = 86_400 * 1_000_000_000

_TABLES = (
    """CREATE TABLE IF NOT EXISTS export_days (
        endpoint TEXT NOT NULL, app TEXT NOT NULL, day TEXT NOT NULL, points BIGINT NOT NULL,
        total BIGINT NOT NULL, exported_at BIGINT NOT NULL, PRIMARY KEY (endpoint, app, day))""",
    """CREATE TABLE IF NOT EXISTS export_claims (
        endpoint TEXT NOT NULL PRIMARY KEY, holder TEXT NOT NULL, until BIGINT NOT NULL)""",
)


class ExportBusy(StoreError):
    """Another export holds the endpoint."""


#: A ``daily_totals`` row: app, day, app version (None when unknown), counter name, total.
VersionRow = tuple[str, str, "str | None", str, int]


@dataclass(frozen=True)
class AppDay:
    """One request: an app's counters on one UTC day, each with its total per app version."""

    app: str
    day: str
    #: (app version or None, counter name, total), unknown version first, then by version and name
    totals: tuple[tuple[str | None, str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, _, n in self.totals)

    def versions(self) -> list[tuple[str | None, list[tuple[str, int]]]]:
        """(app version, its (counter, total)s) in the order of :attr:`totals`."""
        out: dict[str | None, list[tuple[str, int]]] = {}
        for version, name, total in self.totals:
            out.setdefault(version, []).append((name, total))
        return list(out.items())


def _order(row: tuple[str | None, str, int]) -> tuple[bool, str, str]:
    return (row[0] is not None, row[0] or "", row[1])


def endpoint_key(url: str) -> str:
    """The endpoint a mark belongs to: scheme, host, port and path (no credentials, no query,
    no fragment: they would be stored in the database, and do not change the backend)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path or "/", "", ""))


def day_window(day: str) -> tuple[int, int]:
    """The day's start and end, UTC, in nanoseconds since the epoch: a delta point's interval."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=timezone.utc)
    start_ns = int(start.timestamp()) * 1_000_000_000
    return start_ns, start_ns + NS_PER_DAY


def last_closed_day(today: date, settle: int) -> str:
    """The newest day a run with ``settle`` (days) may send."""
    return (today - timedelta(days=settle)).isoformat()


def due(rows: Iterable[VersionRow], exported: set[tuple[str, str]]) -> list[AppDay]:
    """``daily_totals`` rows (app, day, app version, name, total) -> the (app, day)s not yet
    sent, by day then app: oldest first, so a backend that turns deltas into a running total
    sees each stream in order. Pure."""
    per: dict[tuple[str, str], list[tuple[str | None, str, int]]] = {}
    for app, day, version, name, total in rows:
        if (app, day) not in exported:
            per.setdefault((day, app), []).append((version, name, int(total)))
    return [AppDay(app, day, tuple(sorted(totals, key=_order))) for (day, app), totals in sorted(per.items())]


def late(rows: Iterable[VersionRow], sent: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """(app, day) -> counts stored after that day was sent (current total minus the total sent). Pure."""
    now: dict[tuple[str, str], int] = {}
    for app, day, _, _, total in rows:
        if (app, day) in sent:
            now[(app, day)] = now.get((app, day), 0) + int(total)
    return {key: n - sent[key] for key, n in sorted(now.items()) if n > sent[key]}


class Marks:
    """The export's state in the server database, for one endpoint."""

    def __init__(self, store: SQLStore, endpoint: str) -> None:
        self.store = store
        self.endpoint = endpoint
        self.holder = uuid.uuid4().hex
        self._create_tables()

    def _create_tables(self) -> None:
        for attempt in (1, 2):
            try:
                with self.store.transaction() as tx:
                    for sql in _TABLES:
                        tx.execute(sql)
                return
            except StoreError:
                # Two first runs at once on PostgreSQL: one CREATE loses a race on the catalog.
                if attempt == 2:
                    raise

    def claim(self, now: float) -> None:
        """Take the endpoint for :data:`CLAIM_SECONDS`, or raise :class:`ExportBusy`."""
        until = int(now) + CLAIM_SECONDS
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO export_claims (endpoint, holder, until) VALUES (?, ?, ?)"
                " ON CONFLICT (endpoint) DO UPDATE SET holder = excluded.holder, until = excluded.until"
                " WHERE export_claims.until < ? OR export_claims.holder = ?",
                (self.endpoint, self.holder, until, int(now), self.holder),
            )
            rows = tx.execute("SELECT holder, until FROM export_claims WHERE endpoint = ?", (self.endpoint,)).fetchall()
        holder, held_until = rows[0]
        if holder != self.holder:
            when = datetime.fromtimestamp(int(held_until), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise ExportBusy(f"another export to this endpoint is running (its claim holds until {when})")

    def release(self) -> None:
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM export_claims WHERE endpoint = ? AND holder = ?", (self.endpoint, self.holder))

    def exported(self, app: str | None, since: str, until: str) -> dict[tuple[str, str], int]:
        """(app, day) -> total sent, for the days ``since``..``until`` of ``app`` (None: all)."""
        with self.store.reading() as tx:
            rows = tx.execute(
                "SELECT app, day, total FROM export_days WHERE endpoint = ? AND day >= ? AND day <= ?"
                " AND (CAST(? AS TEXT) IS NULL OR app = ?)",
                (self.endpoint, since, until, app, app),
            ).fetchall()
        return {(str(a), str(d)): int(t) for a, d, t in rows}

    def mark(self, sent: AppDay, now: float) -> None:
        """Record ``sent`` as delivered and renew the claim, in one transaction."""
        with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO export_days (endpoint, app, day, points, total, exported_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (endpoint, app, day) DO NOTHING",
                (self.endpoint, sent.app, sent.day, len(sent.totals), sent.total, int(now)),
            )
            tx.execute(
                "UPDATE export_claims SET until = ? WHERE endpoint = ? AND holder = ?",
                (int(now) + CLAIM_SECONDS, self.endpoint, self.holder),
            )


def plan(
    store: SQLStore, marks: Marks, app: str | None, since: str, until: str, late_since: str
) -> tuple[list[AppDay], dict[tuple[str, str], int]]:
    """What to send (days ``since``..``until`` not yet sent) and what arrived late (in the days
    from ``late_since`` on, which the server may still be receiving)."""
    exported = marks.exported(app, min(since, late_since), until)
    rows = store.daily_totals(app, since, until)
    todo = due(rows, set(exported))
    recent = store.daily_totals(app, late_since, until) if late_since <= until else []
    arrived_late = late(recent, {k: v for k, v in exported.items() if k[1] >= late_since})
    return todo, arrived_late


def summary(sent: Sequence[AppDay]) -> str:
    if not sent:
        return "nothing new to export"
    days = sorted({s.day for s in sent})
    apps = len({s.app for s in sent})
    points = sum(len(s.totals) for s in sent)
    counts = sum(s.total for s in sent)
    span = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}"
    return f"exported {len(sent)} app-day(s) of {apps} app(s), {span}: {points} points, {counts} counts"


__all__ = [
    "CLOSED_AFTER_DAYS",
    "AppDay",
    "ExportBusy",
    "Marks",
    "VersionRow",
    "day_window",
    "due",
    "endpoint_key",
    "last_closed_day",
    "late",
    "plan",
    "summary",
]
