"""The consent precedence: DO_NOT_TRACK, then <PREFIX>_TELEMETRY, then the stored choice, then the default."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry_rollup._consent import MODES, Decision, resolve

P = "ACME"
VAR = "ACME_TELEMETRY"

TABLE = [
    # (environment, stored, default) -> decision
    ({}, None, "on", Decision("on", "default")),
    ({}, None, "local", Decision("local", "default")),
    ({}, "off", "on", Decision("off", "stored")),
    ({}, "local", "on", Decision("local", "stored")),
    ({}, "on", "off", Decision("on", "stored")),
    ({"DO_NOT_TRACK": "1"}, "on", "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": "true"}, None, "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": "yes"}, None, "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": " TRUE "}, None, "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": "anything"}, None, "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": "1", VAR: "1"}, "on", "on", Decision("off", "DO_NOT_TRACK")),
    ({"DO_NOT_TRACK": ""}, None, "on", Decision("on", "default")),
    ({"DO_NOT_TRACK": "0"}, None, "on", Decision("on", "default")),
    ({"DO_NOT_TRACK": "false"}, "local", "on", Decision("local", "stored")),
    ({"DO_NOT_TRACK": "False"}, None, "on", Decision("on", "default")),
    ({"DO_NOT_TRACK": "0", VAR: "0"}, None, "on", Decision("off", VAR)),
    ({VAR: "0"}, "on", "on", Decision("off", VAR)),
    ({VAR: "off"}, "on", "on", Decision("off", VAR)),
    ({VAR: "false"}, None, "on", Decision("off", VAR)),
    ({VAR: "no"}, None, "on", Decision("off", VAR)),
    ({VAR: " OFF "}, None, "on", Decision("off", VAR)),
    ({VAR: "1"}, "off", "on", Decision("on", VAR)),
    ({VAR: "on"}, "off", "off", Decision("on", VAR)),
    ({VAR: "true"}, "local", "on", Decision("on", VAR)),
    ({VAR: "yes"}, None, "off", Decision("on", VAR)),
    ({VAR: "local"}, "on", "on", Decision("local", VAR)),
    ({VAR: "LOCAL"}, "off", "on", Decision("local", VAR)),
    # garbage is ignored, never "non-empty means on"
    ({VAR: "maybe"}, "off", "on", Decision("off", "stored")),
    ({VAR: "2"}, None, "off", Decision("off", "default")),
    ({VAR: ""}, None, "local", Decision("local", "default")),
    ({VAR: "enabled"}, "local", "on", Decision("local", "stored")),
    # another app's variable is not ours
    ({"OTHER_TELEMETRY": "0"}, None, "on", Decision("on", "default")),
    # a garbage stored value is no choice
    ({}, "sometimes", "on", Decision("on", "default")),
]


@pytest.mark.parametrize(("environ", "stored", "default", "expected"), TABLE)
def test_precedence_table(environ: dict[str, str], stored: str | None, default: str, expected: Decision) -> None:
    assert resolve(environ, P, stored, default) == expected


KNOWN = {"0", "off", "false", "no", "1", "on", "true", "yes", "local"}
modes = st.sampled_from(MODES)
maybe_mode = st.one_of(st.none(), modes)


@given(value=st.text(max_size=12), stored=maybe_mode, default=modes)
def test_garbage_in_the_app_variable_is_ignored(value: str, stored: str | None, default: str) -> None:
    got = resolve({VAR: value}, P, stored, default)
    if value.strip().lower() in KNOWN:
        assert got.source == VAR
    else:
        assert got == resolve({}, P, stored, default)


@given(
    value=st.text(max_size=12), app_value=st.one_of(st.none(), st.text(max_size=6)), stored=maybe_mode, default=modes
)
def test_do_not_track_wins_unless_empty_zero_or_false(
    value: str, app_value: str | None, stored: str | None, default: str
) -> None:
    environ = {"DO_NOT_TRACK": value}
    if app_value is not None:
        environ[VAR] = app_value
    got = resolve(environ, P, stored, default)
    if value.strip().lower() in ("", "0", "false"):
        without = {k: v for k, v in environ.items() if k != "DO_NOT_TRACK"}
        assert got == resolve(without, P, stored, default)
    else:
        assert got == Decision("off", "DO_NOT_TRACK")


@given(stored=maybe_mode, default=modes)
def test_without_environment_the_stored_choice_beats_the_default(stored: str | None, default: str) -> None:
    got = resolve({}, P, stored, default)
    assert got == (Decision(stored, "stored") if stored else Decision(default, "default"))
