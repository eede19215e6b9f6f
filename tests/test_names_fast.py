"""The regex-free name checks accept exactly what the documented patterns accept."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from telemetry_rollup._names import NAME_PATTERN, RESERVED_PATTERN, env_prefix_for, is_name, is_wire_name

NAME_RE = re.compile(NAME_PATTERN[1:-1])
RESERVED_RE = re.compile(RESERVED_PATTERN[1:-1])

near = st.text(alphabet=st.sampled_from("aZ09_.:-_ é\n\t/\x00ß"), max_size=70)


@given(st.one_of(near, st.text(max_size=70)))
@example("a" * 64)
@example("a" * 65)
@example("_")
@example("_a")
@example("a\n")
@example("")
def test_is_name_and_is_wire_name_match_the_patterns(name: str) -> None:
    assert is_name(name) == (NAME_RE.fullmatch(name) is not None)
    assert is_wire_name(name) == (NAME_RE.fullmatch(name) is not None or RESERVED_RE.fullmatch(name) is not None)


@given(st.one_of(near, st.text(max_size=30)))
@example("acme-cli")
@example("straße")
def test_env_prefix_matches_the_regex_rule(app: str) -> None:
    assert env_prefix_for(app) == re.sub(r"[^A-Z0-9]", "_", app.upper())


def test_non_strings_are_not_names() -> None:
    for obj in (None, 3, b"abc", ["a"]):
        assert not is_name(obj)
        assert not is_wire_name(obj)
