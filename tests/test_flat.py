"""The json-free flat-object reader and writer of the exit path, pinned to json and orjson."""

from __future__ import annotations

import json
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_rollup import _flat

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
flat = st.dictionaries(st.text(), scalars, max_size=8)
no_surrogates = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(flat)
def test_reads_what_json_writes(obj: dict[str, object]) -> None:
    for text in (json.dumps(obj), json.dumps(obj, indent=2), json.dumps(obj, ensure_ascii=False)):
        got = _flat.loads(text.encode("utf-8", "surrogatepass"))
        if got is None:  # only text json itself could not encode as UTF-8
            assert any("\ud800" <= c <= "\udfff" for c in text)
            continue
        assert got == json.loads(text)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.text(alphabet='{}[]":,.-+eE0123456789 \\utrfnal\n', max_size=40)))
def test_never_raises_and_never_disagrees_with_json(data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    got = _flat.loads(raw)
    if got is not None:
        assert got == json.loads(raw.decode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        no_surrogates,
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.floats(min_value=1e-3, max_value=1e15),  # outside, the two choose other exponent forms
            st.sampled_from([float("nan"), float("inf"), 3600.0, 0.5]),
            no_surrogates,
            st.lists(no_surrogates, max_size=3),
        ),
        max_size=8,
    )
)
def test_writes_what_orjson_writes(obj: dict[str, object]) -> None:
    assert _flat.dumps(obj) == orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.one_of(scalars, st.lists(st.text(), max_size=3)), max_size=8))
def test_what_it_writes_reads_back_as_written(obj: dict[str, object]) -> None:
    assert json.loads(_flat.dumps(obj)) == obj


def test_nested_or_special_values_are_left_to_the_full_parser() -> None:
    for text in (b'{"a": {"b": 1}}', b'{"a": [1]}', b'{"a": NaN}', b"[]", b'{"a": 1,}', b"", b"\xff"):
        assert _flat.loads(text) is None
    assert _flat.loads(b'{"mode": "off", "at": "2026-11-21T10:00:00Z"}') == {
        "mode": "off",
        "at": "2026-11-21T10:00:00Z",
    }
    assert math.isinf(_flat.loads(b'{"a": 1e400}')["a"])  # type: ignore[index]
    assert _flat.dumps({"a": "\udcff"}) == b'{\n  "a": "\\udcff"\n}'
