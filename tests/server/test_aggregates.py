"""The pure core of the daily aggregates: folding reports into machines' days, in any order and
any grouping into transactions, gives what a naive recomputation gives; forgetting takes back
exactly a machine's share (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import Sent, figures

from telemetry_rollup.server.aggregates import (
    Contribution,
    Delta,
    MachineDay,
    add_report,
    contribution,
    env_of,
    recompute,
)
from telemetry_rollup.server.store import Environment

APP = "acme"
machines = st.sampled_from(["m1", "m2", "m3", "m4"])
days = st.sampled_from(["2026-11-20", "2026-11-21", "2026-11-22"])
versions = st.sampled_from(["1.0", "1.1", None])
counts = st.dictionaries(st.sampled_from(["build", "lint", "test", "(other names)"]), st.integers(0, 10**9), max_size=4)
reports = st.lists(
    st.builds(
        Sent,
        machine=machines,
        day=days,
        counts=counts,
        env=st.builds(
            Environment,
            app_version=versions,
            lib_version=st.just("0.1.0"),
            os=st.sampled_from(["linux", "darwin"]),
            arch=st.sampled_from(["x86_64", "arm64"]),
            python=st.sampled_from(["3.11", "3.12"]),
            ci=st.booleans(),
        ),
    ),
    max_size=25,
)


def contribution_of(s: Sent) -> Contribution:
    e = s.env
    return Contribution(s.day, s.counts, env_of(e.app_version, e.lib_version, e.os, e.arch, e.python, e.ci))


def as_figures(delta: Delta) -> dict[str, set[tuple[object, ...]]]:
    """A delta in the oracle's shape (the store reads the same rows)."""
    d = delta.without_zeros()
    out: dict[str, set[tuple[object, ...]]] = {
        "counts": {(APP, day, n, t, m) for (day, n), (t, m) in d.names.items() if m},
        "machines": {(APP, day, n) for day, n in d.machines.items()},
        "totals": {(APP, day, v or None, n, t) for (day, v, n), t in d.versions.items()},
    }
    for dim in ("app_version", "os", "python"):
        out[dim] = {
            (APP, day, (v or "(none)") if dim == "app_version" else v, n)
            for (day, dim_, v), n in d.env.items()
            if dim_ == dim
        }
    return out


def fold(sent: list[Sent], cut: int) -> tuple[dict[tuple[str, str], MachineDay], Delta]:
    """Add the reports one by one, as ingest does, with the days' states kept between two
    'transactions' split at ``cut`` (the states pass through their row encoding there)."""
    from telemetry_rollup.server.schema import day_from_row, day_row

    states: dict[tuple[str, str], MachineDay] = {}
    total = Delta()
    for i, s in enumerate(sent):
        if i == cut:  # a new transaction reads the days back from their rows
            states = {k: day_from_row(day_row(APP, k[0], v)[2:]) for k, v in states.items()}
        states[(s.machine, s.day)], change = add_report(states.get((s.machine, s.day)), contribution_of(s))
        total.add(change)
    return states, total


@settings(max_examples=300, deadline=None)
@given(reports, st.integers(0, 25))
def test_incremental_equals_recomputed(sent: list[Sent], cut: int) -> None:
    states, total = fold(sent, cut)
    expected = figures(APP, sent)
    assert as_figures(total) == expected
    assert as_figures(recompute(states.values())) == expected
    assert sum(total.machines.values()) == len(states)


@settings(max_examples=200, deadline=None)
@given(reports, st.randoms(use_true_random=False))
def test_order_does_not_matter(sent: list[Sent], rnd: object) -> None:
    shuffled = list(sent)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert as_figures(fold(shuffled, 0)[1]) == as_figures(fold(sent, 0)[1])


@settings(max_examples=200, deadline=None)
@given(reports, machines)
def test_forgetting_takes_back_exactly_the_machines_share(sent: list[Sent], gone: str) -> None:
    states, total = fold(sent, 0)
    for (machine, _), state in states.items():
        if machine == gone:
            total.add(contribution(state), -1)
    assert as_figures(total) == figures(APP, [s for s in sent if s.machine != gone])


def test_a_second_report_of_the_day_adds_no_machine_but_its_new_names() -> None:
    env = env_of("1.0", "0.1.0", "linux", "x86_64", "3.11", False)
    first, d1 = add_report(None, Contribution("2026-11-21", {"build": 3}, env))
    upgraded = {**env, "app_version": "1.1"}
    second, d2 = add_report(first, Contribution("2026-11-21", {"build": 2, "lint": 1}, upgraded))
    assert d1.machines == {"2026-11-21": 1} and d2.machines == {}
    assert d2.names == {("2026-11-21", "build"): (2, 0), ("2026-11-21", "lint"): (1, 1)}
    assert d2.env == {("2026-11-21", "app_version", "1.1"): 1}  # a machine counts for both versions
    assert second.counts == {"1.0": {"build": 3}, "1.1": {"build": 2, "lint": 1}}
    assert first.counts == {"1.0": {"build": 3}}  # the earlier state is not changed
