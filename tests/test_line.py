"""The exit path's line writer and the compaction's fast reader, pinned to the codec."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_rollup import _codec, _line, _rollup
from telemetry_rollup._names import is_wire_name

names = st.one_of(
    st.sampled_from(["build", "cmd.1", "_dropped", "_", "a" * 64, "a" * 65, "x:y-z", "bad name", 'q"x', "é"]),
    st.text(alphabet="ab_.:-Z09", min_size=1, max_size=6),
)
days = st.sampled_from(["2026-11-21", "2026-11-22", "2026-02-30", "2026-13-01", "2026-1-01", "9999-12-31"])
counts = st.one_of(st.integers(0, 50), st.integers(0, 10**19), st.sampled_from([-1, 2**62, 2**63]))


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    d, n, c = draw(days), draw(names), draw(counts)
    if kind <= 2:  # what the writer makes, valid or not
        return b'{"v":1,"d":"%s","n":"%s","c":%d}' % (d.encode(), n.encode(), c)
    if kind == 3:  # near misses: spacing, leading zeros, other key order, another version
        return draw(
            st.sampled_from(
                [
                    b'{"v":1, "d":"%s","n":"%s","c":%d}' % (d.encode(), n.encode(), c),
                    b'{"v":1,"d":"%s","n":"%s","c":0%d}' % (d.encode(), n.encode(), c),
                    b'{"d":"%s","v":1,"n":"%s","c":%d}' % (d.encode(), n.encode(), c),
                    b'{"v":2,"d":"%s","n":"%s","c":%d}' % (d.encode(), n.encode(), c),
                    b'{"v":1,"d":"%s","n":"%s","c":%d}\r' % (d.encode(), n.encode(), c),
                ]
            )
        )
    if kind == 4:
        return b""
    return draw(st.binary(max_size=40)).replace(b"\n", b"")


@settings(max_examples=400, deadline=None)
@given(st.lists(lines(), max_size=40), st.booleans())
def test_split_own_plus_the_codec_reads_exactly_what_the_codec_reads(items: list[bytes], trailing: bool) -> None:
    data = b"\n".join(items) + (b"\n" if trailing else b"")
    want = _codec.decode_lines(data)
    own, rest = _line.split_own(data)
    got = _codec.decode_lines(rest)
    assert _rollup.merge(own, got.rollup) == want.rollup
    assert got.foreign == want.foreign
    assert got.corrupt == want.corrupt


def test_the_name_pattern_is_the_wire_name_rule() -> None:
    pattern = re.compile(_line._NAME + b"$")
    for name in ["a", "_", "_a", "__", "a" * 64, "_" + "a" * 63, "a" * 65, "-a", ".", "a b", "Z9:._-", "é", ""]:
        assert bool(pattern.match(name.encode())) == is_wire_name(name), name


def test_the_writer_is_what_orjson_writes() -> None:
    import orjson

    for d, n, c in [("2026-11-21", "build", 3), ("2026-01-01", "_dropped", 10**15), ("2026-12-31", "a:b.c-d_e", 0)]:
        assert _line.encode_line_fast(d, n, c) == orjson.dumps({"v": 1, "d": d, "n": n, "c": c}) + b"\n"
