"""Pure: a machine's day, what each of its reports adds to the daily aggregates, and why exact.

Reading raw rows grew with the fleet (a dashboard over 30 days took minutes at 36,000
machines, docs/server.md), so the store keeps, per app and UTC day, exact figures maintained at
ingest, and reads only those (:class:`Delta` names them):

* ``machines``: distinct machines that sent a report for the day;
* ``names``: per counter name, the total and the distinct machines that sent it;
* ``versions``: per app version and counter name, the total (for exports);
* ``env``: per dimension (:data:`DIMENSIONS`) and value, the distinct machines.

The raw data is one :class:`MachineDay` per (app, machine, day): its counts summed per app
version and what it said about itself. A machine may send a day in several reports (``flush
--include-today``, a split at the cap), so a new report adds 1 to a distinct figure only when
the machine's day did not have that name or value yet: :func:`add_report` returns both the
new state and the change. The store reads and writes the machine's day under the machine's
lock, so two reports of one machine are never both "first". Forgetting a machine subtracts
what its days hold (:func:`contribution`, negated). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: What the aggregates count machines by.
DIMENSIONS = ("app_version", "os", "python")
#: What a report says about its machine, all kept with its day (``ci`` as "0" or "1").
FIELDS = ("app_version", "lib_version", "os", "arch", "python", "ci")
#: The value an unknown (``null``) app version is kept under; no valid version is empty.
NO_VERSION = ""


@dataclass(frozen=True)
class Contribution:
    """One new report of a machine: its day, counts (after the name cap) and fields."""

    day: str
    counts: Mapping[str, int]
    env: Mapping[str, str]  # every one of FIELDS


@dataclass
class MachineDay:
    """Everything one machine sent for one day of one app, summed."""

    day: str
    env: dict[str, list[str]]  # field -> the values seen that day, first first
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # app version -> name -> total

    def names(self) -> set[str]:
        return {name for per in self.counts.values() for name in per}


@dataclass
class Delta:
    """Changes to one app's aggregates, keyed without the app."""

    machines: dict[str, int] = field(default_factory=dict)  # day -> distinct machines
    names: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # (day, name) -> (total, machines)
    versions: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (day, version, name) -> total
    env: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (day, dimension, value) -> machines

    def add(self, other: Delta, sign: int = 1) -> None:
        """Add ``other`` (times ``sign``) to this delta."""
        for day, n in other.machines.items():
            self.machines[day] = self.machines.get(day, 0) + sign * n
        for key, (total, machines) in other.names.items():
            t, m = self.names.get(key, (0, 0))
            self.names[key] = (t + sign * total, m + sign * machines)
        for vkey, total in other.versions.items():
            self.versions[vkey] = self.versions.get(vkey, 0) + sign * total
        for ekey, n in other.env.items():
            self.env[ekey] = self.env.get(ekey, 0) + sign * n

    def negated(self) -> Delta:
        out = Delta()
        out.add(self, -1)
        return out

    def without_zeros(self) -> Delta:
        """The same changes, leaving out those that change nothing (no write for them)."""
        return Delta(
            {k: v for k, v in self.machines.items() if v},
            {k: v for k, v in self.names.items() if v != (0, 0)},
            {k: v for k, v in self.versions.items() if v},
            {k: v for k, v in self.env.items() if v},
        )


def add_report(state: MachineDay | None, report: Contribution) -> tuple[MachineDay, Delta]:
    """A machine's day after one more report (``state`` None: its first that day), and what
    that report adds to the aggregates. ``state`` is not changed."""
    out = Delta()
    day = report.day
    if state is None:
        state = MachineDay(day, {f: [] for f in FIELDS})
        out.machines[day] = 1
    env = {f: list(values) for f, values in state.env.items()}
    counts = {version: dict(per) for version, per in state.counts.items()}
    for f in FIELDS:
        value = report.env[f]
        if value not in env.setdefault(f, []):
            env[f].append(value)
            if f in DIMENSIONS:
                out.env[(day, f, value)] = 1
    known = state.names()
    version = report.env["app_version"]
    per = counts.setdefault(version, {})
    for name, value_ in report.counts.items():
        out.names[(day, name)] = (value_, 0 if name in known else 1)
        out.versions[(day, version, name)] = value_
        per[name] = per.get(name, 0) + value_
    return MachineDay(day, env, counts), out


def contribution(state: MachineDay) -> Delta:
    """What one machine's day holds in the aggregates (a machine forgotten takes it back)."""
    out = Delta(machines={state.day: 1})
    for dim in DIMENSIONS:
        for value in state.env.get(dim, []):
            out.env[(state.day, dim, value)] = 1
    for version, per in state.counts.items():
        for name, total in per.items():
            t, _ = out.names.get((state.day, name), (0, 0))
            out.names[(state.day, name)] = (t + total, 1)
            out.versions[(state.day, version, name)] = total
    return out


def recompute(days: Iterable[MachineDay]) -> Delta:
    """An app's aggregates from its machines' days, from scratch: what the figures kept at
    ingest must equal."""
    out = Delta()
    for state in days:
        out.add(contribution(state))
    return out.without_zeros()


def env_of(app_version: str | None, lib_version: str, os: str, arch: str, python: str, ci: bool) -> dict[str, str]:
    """A report's fields as :data:`FIELDS` values."""
    return {
        "app_version": app_version if app_version is not None else NO_VERSION,
        "lib_version": lib_version,
        "os": os,
        "arch": arch,
        "python": python,
        "ci": "1" if ci else "0",
    }
