"""Wire formats 2 and 1 validation, without a server (the HTTP tests repeat the key cases live)."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from server_helpers import forget, forget2, new_id, new_key, rollup, rollup2

from telemetry_rollup._identity import derive_id
from telemetry_rollup.server.models import (
    ForgetRequest,
    ForgetRequestV2,
    InvalidBody,
    RollupRequest,
    RollupRequestV2,
    check_days,
    parse_body,
)

GOOD = rollup("acme", reports=[{"id": new_id(), "day": "2026-11-21", "counts": {"build": 1}}])
KEY = new_key()
GOOD2 = rollup2("acme", KEY, reports=[{"id": new_id(), "day": "2026-11-21", "counts": {"build": 1}}])


def mutate(path: str, value: Any = ..., delete: bool = False) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if delete:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return body


BAD = [
    (mutate("schema", 2), "machine_key"),  # format 2 without its proof
    (mutate("schema", 3), "schema"),
    (mutate("schema", 0), "schema"),
    (mutate("schema", True), "schema"),
    (mutate("schema", 1.0), "schema"),
    (mutate("schema", "1"), "schema"),
    (mutate("app", "-acme"), "app"),
    (mutate("app", "_acme"), "app"),
    (mutate("app", "a" * 65), "app"),
    (mutate("app", "acme\n"), "app"),
    (mutate("app_version", "1.0 beta"), "app_version"),
    (mutate("lib_version", None), "lib_version"),
    (mutate("os", "x" * 33), "os"),
    (mutate("arch", ""), "arch"),
    (mutate("python", 3.11), "python"),
    (mutate("ci", 0), "ci"),
    (mutate("ci", "false"), "ci"),
    (mutate("machine_id", "not-a-uuid"), "machine_id"),
    (mutate("machine_id", GOOD["machine_id"].upper()), "machine_id"),
    (mutate("machine_id", GOOD["machine_id"].replace("-", "")), "machine_id"),
    (mutate("machine_id", "{" + GOOD["machine_id"] + "}"), "machine_id"),
    (mutate("hostname", "box"), "hostname"),
    (mutate("os", delete=True), "os"),
    (mutate("reports", []), "reports"),
    (mutate("reports", [GOOD["reports"][0]] * 51), "reports"),
    (mutate("reports.0.id", "x"), "reports.0.id"),
    (mutate("reports.0.day", "2026-02-30"), "reports.0.day"),
    (mutate("reports.0.day", "2026-1-1"), "reports.0.day"),
    (mutate("reports.0.day", "\uff12\uff10\uff12\uff16-11-21"), "reports.0.day"),
    (mutate("reports.0.extra", 1), "reports.0.extra"),
    (mutate("reports.0.counts", {"build": -1}), "reports.0.counts"),
    (mutate("reports.0.counts", {"build": 10**9 + 1}), "reports.0.counts"),
    (mutate("reports.0.counts", {"build": True}), "reports.0.counts"),
    (mutate("reports.0.counts", {"build": 1.0}), "reports.0.counts"),
    (mutate("reports.0.counts", {"build": "1"}), "reports.0.counts"),
    (mutate("reports.0.counts", {"has space": 1}), "reports.0.counts"),
    (mutate("reports.0.counts", {"_": 1}), "reports.0.counts"),
    (mutate("reports.0.counts", {"x" * 65: 1}), "reports.0.counts"),
    (mutate("reports.0.counts", {f"c{i}": 1 for i in range(1001)}), "reports.0.counts"),
    ({**forget("acme", GOOD["machine_id"]), "forget": 1}, "forget"),
    ({**forget("acme", GOOD["machine_id"]), "forget": False}, "forget"),
    ({**forget("acme", GOOD["machine_id"]), "os": "linux"}, "os"),
    # Format 2: the key must be 64 lowercase hex and prove the id.
    ({**GOOD2, "machine_key": new_key()}, "machine_key"),
    ({**GOOD2, "machine_key": KEY.upper()}, "machine_key"),
    ({**GOOD2, "machine_key": KEY[:-1]}, "machine_key"),
    ({**GOOD2, "machine_key": None}, "machine_key"),
    ({k: v for k, v in GOOD2.items() if k != "machine_key"}, "machine_key"),
    ({**GOOD2, "schema": 1}, "machine_id"),  # format 1: a derived id needs format 2
    ({**forget2("acme", KEY), "machine_key": new_key()}, "machine_key"),
    ({**forget2("acme", KEY), "schema": 1}, "machine_id"),
    # A derived id (version 8) without its key: stripping the proof gains nothing.
    (rollup("acme", derive_id(KEY)), "machine_id"),
    (forget("acme", derive_id(KEY)), "machine_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_invalid_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidBody) as info:
        parse_body(body)
    assert info.value.field == field
    assert info.value.message


def test_a_bad_counter_name_is_not_echoed_in_the_field() -> None:
    with pytest.raises(InvalidBody) as info:
        parse_body(mutate("reports.0.counts", {"secret/path/name": 1}))
    assert "secret" not in info.value.field + info.value.message


@pytest.mark.parametrize("body", [[], "x", 1, None])
def test_non_object_bodies(body: Any) -> None:
    with pytest.raises(InvalidBody):
        parse_body(body)


def test_valid_bodies() -> None:
    parsed = parse_body(GOOD)
    assert isinstance(parsed, RollupRequest)
    assert parse_body(mutate("app_version", None)).app_version is None  # type: ignore[union-attr]
    reserved = {"_dropped": 1, "_invalid": 2, "_run:tty": 3, "a" * 64: 4, "x.y:z-w_v": 0}
    assert parse_body(mutate("reports.0.counts", reserved)).reports[0].counts == reserved  # type: ignore[union-attr]
    assert parse_body(mutate("reports.0.counts", {"n": 10**9})).reports[0].counts == {"n": 10**9}  # type: ignore[union-attr]
    assert parse_body(mutate("reports", [GOOD["reports"][0]] * 50))
    assert isinstance(parse_body(forget("acme", GOOD["machine_id"])), ForgetRequest)
    proven = parse_body(GOOD2)
    assert isinstance(proven, RollupRequestV2) and proven.proven and proven.machine_id == derive_id(KEY)
    assert isinstance(parse_body(forget2("acme", KEY)), ForgetRequestV2)
    assert not parse_body(GOOD).proven


def test_derived_ids_are_version_8_uuids_and_random_ids_are_not() -> None:
    import uuid

    for _ in range(100):
        key = new_key()
        mid = derive_id(key)
        assert uuid.UUID(mid).version == 8 and str(uuid.UUID(mid)) == mid
        assert derive_id(key) == mid
    # The rule TELEMETRY.md gives, checked against an independent computation.
    import hashlib

    raw = bytearray(hashlib.sha256(b"telemetry-rollup machine id\n" + bytes(32)).digest()[:16])
    raw[6] = raw[6] & 0x0F | 0x80
    raw[8] = raw[8] & 0x3F | 0x80
    assert derive_id("00" * 32) == str(uuid.UUID(bytes=bytes(raw)))


def test_day_window() -> None:
    today = date(2026, 11, 22)

    def at(d: str) -> RollupRequest:
        body = parse_body(mutate("reports.0.day", d))
        assert isinstance(body, RollupRequest)
        return body

    check_days(at("2026-10-18"), today)  # 35 days old
    check_days(at("2026-11-23"), today)  # 1 day ahead
    for bad in ("2026-10-17", "2026-11-24", "1970-01-01"):
        with pytest.raises(InvalidBody) as info:
            check_days(at(bad), today)
        assert info.value.field == "reports.0.day"
