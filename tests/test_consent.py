"""The consent precedence: DO_NOT_TRACK, then <PREFIX>_TELEMETRY, then the stored choice, then the default."""

from __future__ import annotations

import json
from pathlib import Path

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
    # any other non-empty value fails closed: a clear attempt to opt out must never mean on
    ({VAR: "maybe"}, "on", "on", Decision("off", VAR)),
    ({VAR: "2"}, None, "on", Decision("off", VAR)),
    ({VAR: "enabled"}, "local", "on", Decision("off", VAR)),
    ({VAR: "disabled"}, "on", "on", Decision("off", VAR)),
    ({VAR: "disable"}, None, "on", Decision("off", VAR)),
    ({VAR: "none"}, None, "on", Decision("off", VAR)),
    ({VAR: "never"}, None, "on", Decision("off", VAR)),
    ({VAR: "n"}, None, "on", Decision("off", VAR)),
    ({VAR: "0ff"}, None, "on", Decision("off", VAR)),
    ({VAR: " "}, None, "on", Decision("off", VAR)),
    # only the empty value is no value at all
    ({VAR: ""}, None, "local", Decision("local", "default")),
    ({VAR: ""}, "off", "on", Decision("off", "stored")),
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
def test_any_unrecognised_value_in_the_app_variable_means_off(value: str, stored: str | None, default: str) -> None:
    got = resolve({VAR: value}, P, stored, default)
    if value == "":
        assert got == resolve({}, P, stored, default)
    elif value.strip().lower() in KNOWN:
        assert got.source == VAR
    else:
        assert got == Decision("off", VAR)
    # whatever the value, the variable never turns on what was not asked for in so many words
    if got.mode == "on" and got.source == VAR:
        assert value.strip().lower() in {"1", "on", "true", "yes"}


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


@pytest.mark.parametrize("value", ["disabled", "0ff", "never"])
def test_status_names_the_value_it_read(tmp_path: Path, value: str) -> None:
    from cli_helpers import plant, run_cli

    home = tmp_path / "home"
    plant(home, "acme", {("2026-01-01", "build"): 1})
    res = run_cli(home, "status", "--json", ACME_TELEMETRY=value)
    app = json.loads(res.stdout)["apps"][0]
    assert (app["mode"], app["source"], app["env_value"]) == ("off", VAR, value)
    text = run_cli(home, "status", ACME_TELEMETRY=value).stdout
    assert text.startswith(f'acme: off ({VAR}="{value}" is set in this environment: not a recognised value, so off)')
    # a recognised value is named too; without the variable the key is null
    local = json.loads(run_cli(home, "status", "--json", ACME_TELEMETRY="local").stdout)["apps"][0]
    assert local["env_value"] == "local"
    assert json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]["env_value"] is None
