from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from telemetry_rollup.server.config import (
    AppRule,
    ConfigError,
    Limits,
    load_config,
    parse_config,
    parse_version,
)


def test_defaults_allow_everything() -> None:
    config = load_config(None)
    assert config.limits == Limits(per_machine=60, per_address=600, window_seconds=60.0)
    rule = config.rule_for("anything")
    assert rule is not None and rule.allows_counter("x") and rule.version_ok(None)


def test_allowlist_rules() -> None:
    config = parse_config(
        {
            "limits": {"per_machine": 5, "per_address": 7, "window_seconds": 2},
            "apps": {"acme": {"counters": ["build", "cmd.*", "_*"], "min_version": "1.2"}},
        }
    )
    assert config.limits == Limits(5, 7, 2.0)
    assert config.rule_for("other") is None
    rule = config.rule_for("acme")
    assert rule is not None
    assert rule.allows_counter("build") and rule.allows_counter("cmd.run")
    assert rule.allows_counter("_dropped")
    assert not rule.allows_counter("lint") and not rule.allows_counter("Build")
    assert rule.version_ok("1.2.0") and rule.version_ok("1.10") and rule.version_ok("2")
    assert rule.version_ok("1.2.0rc1")  # documented: suffixes are ignored
    assert not rule.version_ok("1.1.9") and not rule.version_ok(None)
    assert not rule.version_ok("dev")


def test_parse_version() -> None:
    assert parse_version("1.4.0") == (1, 4, 0)
    assert parse_version("10.2+local") == (10, 2)
    assert parse_version("v1") is None


@pytest.mark.parametrize(
    "data",
    [
        {"limit": {}},
        {"limits": {"per_machine": 0}},
        {"limits": {"per_machine": True}},
        {"limits": {"per_minute": 1}},
        {"limits": {"window_seconds": -1}},
        {"apps": {"acme": {"counter": ["x"]}}},
        {"apps": {"acme": {"counters": "build"}}},
        {"apps": {"acme": {"min_version": "latest"}}},
        {"apps": []},
        [],
    ],
)
def test_invalid_configs(data: Any) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)


def test_load_json_and_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"apps": {"acme": {}}}))
    assert load_config(path).rule_for("acme") == AppRule()
    toml = tmp_path / "c.toml"
    toml.write_text('[limits]\nper_machine = 3\n[apps.acme]\ncounters = ["a*"]\n')
    if sys.version_info >= (3, 11):
        config = load_config(toml)
        assert config.limits.per_machine == 3
        assert config.rule_for("acme") == AppRule(counters=("a*",))
    else:
        with pytest.raises(ConfigError):
            load_config(toml)
    (tmp_path / "bad.json").write_text("{")
    for bad in (tmp_path / "bad.json", tmp_path / "missing.json"):
        with pytest.raises(ConfigError):
            load_config(bad)


def test_connection_limits_name_cap_and_trusted_proxies() -> None:
    config = parse_config(
        {
            "limits": {
                "names_per_app_day": 50,
                "connections": 200,
                "connections_per_address": 4,
                "request_seconds": 2.5,
            },
            "proxy": {"trusted": ["127.0.0.1", "10.0.0.0/8", "::1"]},
        }
    )
    assert (config.limits.names_per_app_day, config.limits.connections) == (50, 200)
    assert (config.limits.connections_per_address, config.limits.request_seconds) == (4, 2.5)
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert parse_config({}).trusted_proxies == ()
    for bad in (
        {"limits": {"names_per_app_day": 0}},
        {"limits": {"connections": "many"}},
        {"limits": {"request_seconds": 0}},
        {"limits": {"request_seconds": True}},
        {"proxy": {"trusted": ["not-an-address"]}},
        {"proxy": {"trusted": "127.0.0.1"}},
        {"proxy": {"trust": []}},
    ):
        with pytest.raises(ConfigError):
            parse_config(bad)
