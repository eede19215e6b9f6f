"""Properties of the pure core: collapse, split, encode/decode, the cap, reports, request packing."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_rollup import _codec, _days, _rollup
from telemetry_rollup._names import CLAMPED, DROPPED, MAX_COUNT, is_wire_name

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
days = st.integers(min_value=20000, max_value=20100).map(_days.iso)
counts = st.integers(min_value=1, max_value=10**6)
lines = st.lists(st.tuples(days, names, counts), max_size=60)
rollups = st.dictionaries(st.tuples(days, names), counts, max_size=60)


def collapse(items: list[tuple[str, str, int]]) -> _codec.Rollup:
    data = b"".join(_codec.encode_line_fast(d, n, c) for d, n, c in items)
    return _codec.decode_lines(data).rollup


@given(lines, st.randoms())
def test_collapse_is_order_independent(items: list[tuple[str, str, int]], rnd: object) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert collapse(items) == collapse(shuffled)
    assert sum(collapse(items).values()) == sum(c for _, _, c in items)


@given(rollups, days, st.booleans())
def test_split_then_merge_is_the_whole(r: _codec.Rollup, today: str, include_today: bool) -> None:
    completed, remainder = _rollup.split_completed(r, today=today, include_today=include_today)
    back = dict(remainder)
    for day, cs in completed.items():
        assert day < today or (include_today and day == today)
        for name, c in cs.items():
            back[(day, name)] = back.get((day, name), 0) + c
    assert back == r
    assert all(d > today or (d == today and not include_today) for d, _ in remainder)


@given(rollups)
def test_encode_decode_round_trip(r: _codec.Rollup) -> None:
    dec = _codec.decode_lines(_codec.encode_lines(r))
    assert dec.rollup == r and dec.corrupt == 0 and dec.foreign == []


@given(days, st.one_of(names, st.sampled_from(["_dropped", "_invalid", "_run:tty"])), st.integers(0, 10**12))
def test_fast_encoder_is_byte_identical_to_orjson(day: str, name: str, c: int) -> None:
    assert _codec.encode_line_fast(day, name, c) == orjson.dumps({"v": 1, "d": day, "n": name, "c": c}) + b"\n"


def test_decode_skips_and_counts_bad_lines_and_keeps_newer_versions() -> None:
    data = (
        b'{"v":1,"d":"2026-11-20","n":"a","c":2}\n'
        b'{"v":1,"d":"2026-11-20","n":"a","c":3}\n'
        b"garbage\n"
        b'{"v":1,"d":"2026-13-40","n":"a","c":1}\n'
        b'{"v":1,"d":"2026-11-20","n":"bad name","c":1}\n'
        b'{"v":1,"d":"2026-11-20","n":"a","c":-1}\n'
        b'{"v":2,"d":"2026-11-20","n":"a","c":1,"extra":true}\n'
        b'{"v":1,"d":"2026-11-20","n":"b","c":'  # truncated
    )
    dec = _codec.decode_lines(data)
    assert dec.rollup == {("2026-11-20", "a"): 5}
    assert dec.corrupt == 5
    assert dec.foreign == [b'{"v":2,"d":"2026-11-20","n":"a","c":1,"extra":true}']


@settings(max_examples=150)
@given(
    rollups,
    st.lists(st.text(max_size=30).map(lambda t: orjson.dumps({"v": 2, "x": t})), max_size=5),
    st.integers(200, 4000),
    days,
)
def test_cap_is_never_exceeded_and_loss_is_accounted(
    r: _codec.Rollup, foreign: list[bytes], cap: int, today: str
) -> None:
    data, dropped = _rollup.fit_to_cap(r, foreign, cap=cap, today=today)
    assert len(data) <= cap
    dec = _codec.decode_lines(data)
    foreign_removed = len(foreign) - len(dec.foreign)
    # Every count is either kept or recorded under _dropped (a removed foreign line counts one).
    assert sum(dec.rollup.values()) == sum(r.values()) + foreign_removed
    assert dropped >= foreign_removed
    if dropped == 0:
        assert dec.rollup == r and dec.foreign == foreign
    else:
        assert sum(c for (_, n), c in dec.rollup.items() if n == DROPPED) >= dropped


@given(
    st.dictionaries(days, st.dictionaries(names, st.integers(1, 3 * MAX_COUNT), min_size=1, max_size=30), max_size=4)
)
def test_reports_keep_totals_and_bounds(completed: dict[str, dict[str, int]]) -> None:
    ids = iter(range(10**6))
    reports = _rollup.make_reports(completed, lambda: str(next(ids)))
    back: dict[str, dict[str, int]] = {}
    for rep in reports:
        assert 0 < len(rep["counts"]) <= _rollup.MAX_COUNTERS_PER_REPORT
        assert all(0 < c <= MAX_COUNT and is_wire_name(n) for n, c in rep["counts"].items())
        for n, c in rep["counts"].items():
            back.setdefault(rep["day"], {})[n] = back.get(rep["day"], {}).get(n, 0) + c
    # One report per day (at most 1000 names here): never split by value, whatever the values.
    assert len(reports) == len(completed)
    for day, cs in completed.items():
        got = back[day]
        excess = sum(max(0, c - MAX_COUNT) for c in cs.values())
        assert {n: c for n, c in got.items() if n != CLAMPED} == {n: min(c, MAX_COUNT) for n, c in cs.items()}
        assert got.get(CLAMPED, 0) == min(excess, MAX_COUNT)
    assert len({r["id"] for r in reports}) == len(reports)


# -- huge counts: the largest value one (day, name) holds (issue 12.5) -------------------------------
huge = st.one_of(
    st.integers(0, 2 * MAX_COUNT), st.integers(0, 10**30), st.sampled_from([2**63 - 1, 2**63, 2**64, 10**15])
)
any_names = st.one_of(names, st.sampled_from([DROPPED, CLAMPED, "_invalid", "_run:tty"]))
huge_rollups = st.dictionaries(st.tuples(days, any_names), huge, max_size=20)


def _conserved(inputs: list[_codec.Rollup], out: _codec.Rollup) -> None:
    """The saturation rule: every (day, name) at most MAX_COUNT; an app's counter keeps
    min(total, MAX_COUNT) and its excess goes to (day, _clamped); reserved counters saturate."""
    totals: dict[tuple[str, str], int] = {}
    for r in inputs:
        for k, c in r.items():
            totals[k] = totals.get(k, 0) + c
    assert all(0 <= c <= MAX_COUNT for c in out.values())
    for (d, n), total in totals.items():
        if n != CLAMPED:
            assert out.get((d, n), 0) == min(total, MAX_COUNT)
    for d in {d for d, _ in totals}:
        excess = sum(max(0, t - MAX_COUNT) for (dd, n), t in totals.items() if dd == d and n[0] != "_")
        assert out.get((d, CLAMPED), 0) == min(MAX_COUNT, totals.get((d, CLAMPED), 0) + excess)


@given(st.lists(huge_rollups, max_size=4))
def test_merge_saturates_and_accounts_for_the_excess(inputs: list[_codec.Rollup]) -> None:
    _conserved(inputs, _rollup.merge(*inputs))


@given(st.lists(huge_rollups, min_size=2, max_size=4), st.randoms())
def test_merge_is_order_independent_even_when_saturated(inputs: list[_codec.Rollup], rnd: object) -> None:
    shuffled = list(inputs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert _rollup.merge(*inputs) == _rollup.merge(*shuffled)
    assert _rollup.merge(_rollup.merge(*inputs[:1]), _rollup.merge(*inputs[1:])) == _rollup.merge(*inputs)


@given(st.dictionaries(st.tuples(st.integers(20000, 20003), any_names), huge, max_size=20))
def test_from_day_numbers_clamps(snapshot: dict[tuple[int, str], int]) -> None:
    out = _rollup.from_day_numbers(snapshot)
    _conserved([{(_days.iso(d), n): c for (d, n), c in snapshot.items()}], out)


@given(st.lists(st.tuples(days, any_names, huge), max_size=20))
def test_decoding_never_loses_a_huge_value(items: list[tuple[str, str, int]]) -> None:
    """Values above 2**63 (orjson reads those past 2**64 as floats) are clamped, not lost as corrupt."""
    data = b"".join(_codec.encode_line_fast(d, n, c) for d, n, c in items)
    dec = _codec.decode_lines(data)
    assert dec.corrupt == 0
    totals: dict[tuple[str, str], int] = {}
    for d, n, c in items:
        totals[(d, n)] = totals.get((d, n), 0) + c
    _conserved([totals], dec.rollup)


@given(st.lists(days, max_size=3), st.integers(0, 10**20), days)
def test_dropped_is_capped_itself(carry_days: list[str], more: int, today: str) -> None:
    r: _codec.Rollup = {(d, DROPPED): MAX_COUNT for d in carry_days}
    _rollup.add_dropped(r, more, today)
    assert all(c <= MAX_COUNT for c in r.values())
    assert r.get((today, DROPPED), 0) == min(MAX_COUNT, (MAX_COUNT if today in carry_days else 0) + more)


def test_a_huge_count_costs_one_report() -> None:
    ids = iter(range(10))
    reports = _rollup.make_reports({"2026-11-20": {"bytes": 10**15, "build": 42}}, lambda: str(next(ids)))
    assert reports == [
        {"id": "0", "day": "2026-11-20", "counts": {CLAMPED: MAX_COUNT, "build": 42, "bytes": MAX_COUNT}}
    ]


def _report(day: str, rid: str, counts: dict[str, int]) -> dict[str, object]:
    return {"id": rid, "day": day, "counts": counts}


report_strategy = st.builds(
    _report,
    days,
    st.uuids().map(str),
    st.one_of(
        st.dictionaries(names, st.integers(1, 100), min_size=1, max_size=3),
        st.dictionaries(st.sampled_from([DROPPED, CLAMPED, "_run:tty"]), st.integers(1, 100), min_size=1, max_size=2),
        st.dictionaries(any_names, st.integers(1, 100), min_size=1, max_size=3),
    ),
)


@given(st.lists(report_strategy, max_size=30, unique_by=lambda r: r["id"]), st.integers(0, 30))
def test_the_outbox_never_drops_real_counts_for_reserved_only_reports(
    reports: list[dict[str, object]], cap: int
) -> None:
    dropped = _rollup.choose_dropped(reports, cap=cap)
    kept = [r for r in reports if r not in dropped]
    assert len(kept) == min(len(reports), cap) and len(dropped) + len(kept) == len(reports)

    def real(r: dict[str, object]) -> bool:
        return any(n[0] != "_" for n in r["counts"])  # type: ignore[attr-defined]

    if any(real(r) for r in dropped):
        assert all(real(r) for r in kept), "a reserved-only report was kept while real counts were dropped"
        # among real reports, the oldest days go first
        if kept:
            assert max(r["day"] for r in dropped if real(r)) <= min(r["day"] for r in kept)  # type: ignore[type-var]


@given(st.lists(st.integers(10, 30000), max_size=200))
def test_requests_respect_report_and_byte_limits(sizes: list[int]) -> None:
    batches = _rollup.pack_requests(sizes, overhead=300)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= _rollup.MAX_REPORTS_PER_REQUEST
        assert len(b) == 1 or 300 + sum(sizes[i] + 1 for i in b) <= _rollup.MAX_REQUEST_BYTES


def test_payload_has_exactly_the_documented_fields() -> None:
    meta = {
        "app": "acme",
        "app_version": None,
        "lib_version": "0.1.0",
        "machine_id": "m",
        "machine_key": "k",
        "os": "linux",
        "arch": "x86_64",
        "python": "3.11",
        "ci": False,
        "secret": "never",
    }
    body = json.loads(_codec.encode_payload(meta, [{"id": "i", "day": "2026-11-21", "counts": {"a": 1}, "x": 1}]))
    assert sorted(body) == sorted(
        ["schema", "app", "app_version", "lib_version", "machine_id", "machine_key", "os", "arch", "python", "ci"]
        + ["reports"]
    )
    assert body["schema"] == 2
    assert body["reports"] == [{"id": "i", "day": "2026-11-21", "counts": {"a": 1}}]


def test_expiry() -> None:
    assert _rollup.expired("2026-10-01", today="2026-11-22")
    assert not _rollup.expired("2026-10-23", today="2026-11-22")


@given(st.integers(min_value=-719162, max_value=2932896))  # 0001-01-01 .. 9999-12-31
def test_iso_day_arithmetic_matches_datetime(day: int) -> None:
    import datetime

    expected = (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
    assert _days.iso(day) == expected
    assert _days.parse_iso(expected) == day
