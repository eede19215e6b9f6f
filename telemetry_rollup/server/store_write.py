"""The store's writes: ingest, forget and prune, each within one transaction it is given.

Lock order, the same in every transaction, so concurrent PostgreSQL transactions wait for each
other instead of deadlocking: the machines' advisory locks (sorted keys), then rows of the
machines' own (``seen`` tags, report keys, their days), then the days' ``name_days`` rows when
new names come (sorted), then the aggregate tables in a fixed order, each table's rows sorted
by key, then ``refusals`` (or ``forgotten``/``deletions``). SQLite runs one writer at a time
and needs none of it. Several server processes on one database keep every rule: the locks and
keys live in the database, never in a process.

The cost of a report does not grow with what its machine sent before: deduplication is a
lookup of its key, and "is this name new for the machine today" a lookup of one row, the
machine's day (a machine sending thousands of reports a day costs what one sending one does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from telemetry_rollup.server.aggregates import Contribution, Delta, MachineDay, add_report, contribution, env_of
from telemetry_rollup.server.db import (
    ADD,
    IGNORE,
    REPLACE,
    Dialect,
    Executor,
    StoreError,
    insert,
    insert_returning,
    lock,
    lock_key,
    select_by_keys,
    try_lock,
)
from telemetry_rollup.server.names_cap import KnownNames, admitted, fold, folded_names
from telemetry_rollup.server.records import FORGET_SECONDS, Ingest, IngestResult, ReportRows, seen_tag
from telemetry_rollup.server.schema import (
    DELETIONS,
    FORGOTTEN,
    MACHINE_DAYS,
    REFUSALS,
    REPORTS,
    SEEN,
    apply_delta,
    day_from_row,
    day_row,
)

_PRUNE_LOCK = lock_key("telemetry_rollup prune")


_NORMAL, _TAGS, _LEGACY, _REFUSED = "normal", "tags", "legacy", "refused"


def _kind(batch: Ingest, forgotten: dict[tuple[str, str], int]) -> str:
    """How a request is stored: with its machine, as tags only (``env=None``), with its
    machine after a deletion without proof, or not at all (a proven deletion request)."""
    if batch.env is None:
        return _TAGS
    proven = forgotten.get((batch.app, batch.machine_id))
    return _NORMAL if proven is None else _REFUSED if proven else _LEGACY


def _forgotten(tx: Executor, d: Dialect, machines: Iterable[tuple[str, str]], now: float) -> dict[tuple[str, str], int]:
    keys = sorted(set(machines))
    rows = select_by_keys(
        tx, d, FORGOTTEN, ["app", "machine_id", "proven"], ["app", "machine_id"], keys, "since >= ?",
        (int(now) - FORGET_SECONDS,),
    )  # fmt: skip
    return {(str(a), str(m)): int(p) for a, m, p in rows}


def ingest(
    tx: Executor, d: Dialect, known: KnownNames, cap: int, batches: Sequence[Ingest], now: float
) -> list[IngestResult | None]:
    """Store the batches' new reports; per batch its result, or None for a machine whose proven
    deletion request refuses it (nothing of that batch is written)."""
    lock(tx, d, [lock_key(b.app, b.machine_id) for b in batches])
    forgotten = _forgotten(tx, d, [(b.app, b.machine_id) for b in batches if b.env is not None], now)
    kinds = [_kind(b, forgotten) for b in batches]
    # Tags: reports kept without their machine, and those of a machine forgotten without proof
    # (it may report again, but a resend of what it sent before the deletion is a duplicate).
    tags = sorted({(b.app, seen_tag(b.machine_id, r.id)) for b, k in zip(batches, kinds) if k in (_TAGS, _LEGACY)
                   for r in b.reports})  # fmt: skip
    seen = {(str(a), str(t)) for a, t in select_by_keys(tx, d, SEEN, ["app", "tag"], ["app", "tag"], tags)}

    def tagged(b: Ingest, kind: str, r: ReportRows) -> bool:
        return kind in (_TAGS, _LEGACY) and (b.app, seen_tag(b.machine_id, r.id)) in seen

    # Report keys are inserted unless stored; under the machine's lock, "inserted" means "new".
    keys = sorted({(r.day, b.app, b.machine_id, r.id) for b, k in zip(batches, kinds) if k in (_NORMAL, _LEGACY)
                   for r in b.reports if not tagged(b, k, r)})  # fmt: skip
    inserted = insert_returning(tx, d, REPORTS, keys)

    results: list[tuple[int, int, list[str]] | None] = []  # per batch: new, duplicates, ids stored
    new_tags: list[tuple[str, str, str]] = []
    machines: dict[tuple[str, str], list[tuple[Ingest, ReportRows]]] = {}  # new reports per machine
    counted: list[tuple[str, ReportRows]] = []  # every new report, for its refusals
    for batch, kind in zip(batches, kinds):
        if kind == _REFUSED:
            results.append(None)
            continue
        new = duplicates = 0
        with_machine: list[str] = []
        for report in sorted(batch.reports, key=lambda r: r.id):
            key = (report.day, batch.app, batch.machine_id, report.id)
            if tagged(batch, kind, report) or (kind != _TAGS and key not in inserted):
                duplicates += 1
                continue
            if kind == _TAGS:
                tag = (batch.app, seen_tag(batch.machine_id, report.id))
                seen.add(tag)
                new_tags.append((*tag, report.day))
            else:
                inserted.discard(key)  # the same key twice in one request: the second is a duplicate
                machines.setdefault((batch.app, batch.machine_id), []).append((batch, report))
                with_machine.append(report.id)
            new += 1
            counted.append((batch.app, report))
        results.append((new, duplicates, with_machine))
    insert(tx, d, SEEN, sorted(new_tags), IGNORE)
    stored_counts = _add_to_days(tx, d, known, cap, machines)
    refused: dict[tuple[str, str, str], int] = {}
    for app, report in counted:
        reasons = dict(report.refused)
        folded = folded_names(report.counts, stored_counts.get((app, report.id), {}))
        if folded:
            reasons["names_over_cap"] = folded
        for reason, n in reasons.items():
            if n:
                refused[(app, report.day, reason)] = refused.get((app, report.day, reason), 0) + n
    insert(tx, d, REFUSALS, [(*k, n) for k, n in sorted(refused.items())], ADD)
    return [
        None if r is None else IngestResult(
            stored=r[0], duplicates=r[1], values=sum(sum(stored_counts[(b.app, i)].values()) for i in r[2])
        )
        for b, r in zip(batches, results)
    ]  # fmt: skip


def _add_to_days(
    tx: Executor,
    d: Dialect,
    known: KnownNames,
    cap: int,
    machines: dict[tuple[str, str], list[tuple[Ingest, ReportRows]]],
) -> dict[tuple[str, str], dict[str, int]]:
    """Add the new reports (counts folded by the name cap) to their machines' days and to the
    aggregates; return each new report's stored counts by (app, report id)."""
    names_by_app: dict[str, dict[str, set[str]]] = {}
    for (app, _), reports in machines.items():
        for _, report in reports:
            names_by_app.setdefault(app, {}).setdefault(report.day, set()).update(report.counts)
    allowed = {app: admitted(tx, d, known, cap, app, by_day) for app, by_day in sorted(names_by_app.items())}
    out: dict[tuple[str, str], dict[str, int]] = {}
    new: dict[tuple[str, str, str], list[Contribution]] = {}  # (app, machine, day) -> its new reports
    for (app, machine), reports in sorted(machines.items()):
        for batch, report in reports:
            env = batch.env
            assert env is not None  # only reports stored with their machine are here
            counts = fold(report.counts, allowed[app][report.day])
            out[(app, report.id)] = counts
            fields = env_of(env.app_version, env.lib_version, env.os, env.arch, env.python, env.ci)
            new.setdefault((app, machine, report.day), []).append(Contribution(report.day, counts, fields))
    # Most reports are their machine's first of the day: insert the day as they make it, and
    # only for the days already there read them and write them again.
    first = {key: _fold(None, reports) for key, reports in sorted(new.items())}
    inserted = insert_returning(tx, d, MACHINE_DAYS, [day_row(a, m, first[(a, m, day)][0]) for a, m, day in first])
    again = sorted(key for key in first if key not in inserted)
    columns = ["app", "machine_id", "day", *MACHINE_DAYS.values]
    stored = select_by_keys(tx, d, MACHINE_DAYS, columns, MACHINE_DAYS.key, again)
    later = {(str(r[0]), str(r[1]), str(r[2])): _fold(day_from_row(r[2:]), new[(str(r[0]), str(r[1]), str(r[2]))])
             for r in stored}  # fmt: skip
    if len(later) != len(again):  # impossible under the machines' locks; never count a report twice
        raise StoreError("a machine's day changed during the transaction")
    deltas: dict[str, Delta] = {}
    for key, (_, change) in {**first, **later}.items():
        deltas.setdefault(key[0], Delta()).add(change)
    insert(tx, d, MACHINE_DAYS, [day_row(a, m, later[(a, m, day)][0]) for a, m, day in sorted(later)], REPLACE)
    apply_delta(tx, d, deltas)
    return out


def _fold(state: MachineDay | None, reports: Sequence[Contribution]) -> tuple[MachineDay, Delta]:
    """A machine's day after ``reports``, and what they add to the aggregates."""
    total = Delta()
    for report in reports:
        state, change = add_report(state, report)
        total.add(change)
    assert state is not None  # at least one report
    return state, total


def forget(tx: Executor, d: Dialect, app: str, machine_id: str, now: float, today: str, proven: bool) -> bool:
    """Delete what is stored for the machine and take its days out of the aggregates (its
    reports' ``seen`` tags are kept); True when that removed something."""
    lock(tx, d, [lock_key(app, machine_id)])
    tx.execute("DELETE FROM forgotten WHERE since < ?", (int(now) - FORGET_SECONDS,))
    columns = ", ".join(["day", *MACHINE_DAYS.values])
    rows = tx.execute(
        f"SELECT {columns} FROM machine_days WHERE app = ? AND machine_id = ? ORDER BY day",  # noqa: S608 - constants
        (app, machine_id),
    ).fetchall()
    if not rows:
        return False
    days = [day_from_row(row) for row in rows]
    keys = [(s.day, app, machine_id) for s in days]
    ids = select_by_keys(tx, d, REPORTS, ["day", "id"], REPORTS.key[:3], keys)
    insert(tx, d, SEEN, sorted((app, seen_tag(machine_id, str(i)), str(day)) for day, i in ids), IGNORE)
    delta = Delta()
    for state in days:
        delta.add(contribution(state), -1)
    apply_delta(tx, d, {app: delta})
    for state in days:
        tx.execute("DELETE FROM reports WHERE day = ? AND app = ? AND machine_id = ?", (state.day, app, machine_id))
    tx.execute("DELETE FROM machine_days WHERE app = ? AND machine_id = ?", (app, machine_id))
    tx.execute(
        "INSERT INTO forgotten (app, machine_id, since, proven) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (app, machine_id) DO UPDATE SET since = excluded.since,"
        " proven = CASE WHEN forgotten.proven > excluded.proven THEN forgotten.proven ELSE excluded.proven END",
        (app, machine_id, int(now), 1 if proven else 0),
    )
    insert(tx, d, DELETIONS, [(app, today, 1)], ADD)
    return True


def prune_day(tx: Executor, d: Dialect, day: str) -> int | None:
    """Delete one day's raw rows (report keys, machines' days, tags, the names ledger), keeping
    its aggregates; the machines' days deleted, or None when another process is pruning. Report
    keys before machines' days, as :func:`forget` deletes them, so the two wait for each other
    instead of deadlocking over a machine forgotten while its day is pruned."""
    if not try_lock(tx, d, _PRUNE_LOCK):
        return None
    tx.execute("DELETE FROM reports WHERE day = ?", (day,))
    deleted = tx.execute("DELETE FROM machine_days WHERE day = ?", (day,)).rowcount
    for table in ("seen", "names", "name_days"):
        tx.execute(f"DELETE FROM {table} WHERE day = ?", (day,))  # noqa: S608 - constants
    return max(0, deleted)
