"""The figures the store must show, recomputed naively from what was sent, independently of the
store's incremental code: sums and sets of machines, as a GROUP BY over raw rows would give."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telemetry_rollup.server.aggregates import DIMENSIONS, recompute
from telemetry_rollup.server.store import Environment, Ingest, ReportRows, SQLStore

SINCE = "2000-01-01"
Figures = dict[str, set[tuple[Any, ...]]]


@dataclass(frozen=True)
class Sent:
    """One report the store must hold (deduplicated), with its machine."""

    machine: str
    day: str
    counts: dict[str, int]
    env: Environment


def figures(app: str, sent: Iterable[Sent]) -> Figures:
    totals: dict[tuple[str, str], int] = {}
    name_machines: dict[tuple[str, str], set[str]] = {}
    day_machines: dict[str, set[str]] = {}
    by: dict[tuple[str, str, str], set[str]] = {}
    versions: dict[tuple[str, str | None, str], int] = {}
    for s in sent:
        day_machines.setdefault(s.day, set()).add(s.machine)
        values = {"app_version": s.env.app_version or "(none)", "os": s.env.os, "python": s.env.python}
        for dim in DIMENSIONS:
            by.setdefault((dim, s.day, values[dim]), set()).add(s.machine)
        for name, value in s.counts.items():
            totals[(s.day, name)] = totals.get((s.day, name), 0) + value
            name_machines.setdefault((s.day, name), set()).add(s.machine)
            key = (s.day, s.env.app_version, name)
            versions[key] = versions.get(key, 0) + value
    out: Figures = {
        "counts": {(app, d, n, t, len(name_machines[(d, n)])) for (d, n), t in totals.items()},
        "machines": {(app, d, len(m)) for d, m in day_machines.items()},
        "totals": {(app, d, v, n, t) for (d, v, n), t in versions.items() if t},
    }
    for dim in DIMENSIONS:
        out[dim] = {(app, d, v, len(m)) for (dim_, d, v), m in by.items() if dim_ == dim}
    return out


def store_figures(store: SQLStore, app: str, since: str = SINCE, until: str = "9999-12-31") -> Figures:
    out: Figures = {
        "counts": set(store.daily_counts(app, since, until)),
        "machines": set(store.machines_per_day(app, since, until)),
        "totals": set(store.daily_totals(app, since, until)),
    }
    for dim in DIMENSIONS:
        out[dim] = set(store.machines_by(dim, app, since, until))
    return out


def raw_figures(store: SQLStore, app: str) -> Figures:
    """The figures recomputed from the raw rows the store holds (its machines' days)."""
    delta = recompute(state for _, state in store.machine_days(app))
    out: Figures = {
        "counts": {(app, d, n, t, m) for (d, n), (t, m) in delta.names.items() if m},
        "machines": {(app, d, n) for d, n in delta.machines.items()},
        "totals": {(app, d, v or None, n, t) for (d, v, n), t in delta.versions.items() if t},
    }
    for dim in DIMENSIONS:
        out[dim] = {
            (app, d, (v or "(none)") if dim == "app_version" else v, n)
            for (d, dim_, v), n in delta.env.items()
            if dim_ == dim
        }
    return out


NAMES = [f"cmd.{i}" for i in range(30)] + ["build:ok", "build:error", "build:dur:lt1s", "_run:tty"]
WEIGHTS = [1 / (i + 1) for i in range(len(NAMES))]  # a few names are common, most rare


def workload(
    seed: int, app: str, machines: int = 24, days: int = 5, first_day: int = -1
) -> tuple[list[Ingest], list[Sent]]:
    """Requests a small fleet sends: some machines daily, most now and then, a day sometimes in
    two or three reports, an app upgraded mid-day, unknown versions, reports with no counts."""
    from server_helpers import day

    rng = random.Random(seed)
    batches: list[Ingest] = []
    sent: list[Sent] = []
    for _ in range(machines):
        machine = str(uuid.UUID(int=rng.getrandbits(128)))
        os_, python = rng.choice(["linux", "darwin", "win32"]), rng.choice(["3.11", "3.12", "3.9"])
        version = rng.choice(["1.0", "1.1", None])
        active = rng.choice([0.9, 0.4, 0.15])
        pending: list[tuple[Environment, ReportRows]] = []
        for d in range(days):
            if rng.random() > active:
                continue
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                if rng.random() < 0.15:
                    version = rng.choice(["1.2", "2.0"])  # upgraded mid-day
                k = rng.choice([0, 1, 3, 6])
                counts = {n: rng.randint(0, 40) for n in rng.choices(NAMES, WEIGHTS, k=k)}
                report = ReportRows(str(uuid.UUID(int=rng.getrandbits(128))), day(first_day - d), counts)
                env = Environment(version, "0.1.0", os_, "x86_64", python, rng.random() < 0.2)
                sent.append(Sent(machine, report.day, counts, env))
                pending.append((env, report))
        # A request carries up to three reports of one environment (several days at once).
        while pending:
            env, first = pending.pop(0)
            group = [first]
            while pending and pending[0][0] == env and len(group) < 3:
                group.append(pending.pop(0)[1])
            batches.append(Ingest(app, machine, env, group))
    return batches, sent
