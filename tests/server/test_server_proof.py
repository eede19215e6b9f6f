"""A machine's data is its own: forged requests, tried over real HTTP against a real server.

Wire format 2 carries the machine's key; the id is its hash. Someone who knows only the id
(``status``, ``show`` and ``view`` print it; a bug report may quote it) cannot erase or
silence the machine, cannot take its report ids, and cannot inflate "deletions honoured".
"""

from __future__ import annotations

from server_helpers import (
    Server,
    day,
    forget,
    forget2,
    new_id,
    new_key,
    report_json,
    rollup,
    rollup2,
    totals,
)

from telemetry_rollup._identity import derive_id


def _deletions(server: Server, app: str) -> int:
    return sum(r["n"] for r in report_json(server, app)["deletions"])


def test_a_deletion_request_without_the_key_erases_nothing_and_silences_nothing(server: Server, app_name: str) -> None:
    key = new_key()
    victim = derive_id(key)
    assert server.post(rollup2(app_name, key)).json()["stored"] == 1
    # Forged: format 1 for the (derived) id, and format 2 with someone else's key.
    forged_v1 = server.post(forget(app_name, victim))
    assert forged_v1.status_code == 400 and forged_v1.json()["field"] == "machine_id"
    wrong_key = {**forget2(app_name, new_key()), "machine_id": victim}
    forged_v2 = server.post(wrong_key)
    assert forged_v2.status_code == 400 and forged_v2.json()["field"] == "machine_key"
    assert totals(server, app_name) == {(day(-1), "build"): (30, 1), (day(-1), "lint"): (90, 1)}
    assert _deletions(server, app_name) == 0
    # The machine is not silenced: its next report is stored.
    nxt = server.post(rollup2(app_name, key, reports=[{"id": new_id(), "day": day(-1), "counts": {"build": 1}}]))
    assert nxt.status_code == 200 and nxt.json()["stored"] == 1


def test_a_report_without_the_key_is_refused_for_a_derived_id(server: Server, app_name: str) -> None:
    key = new_key()
    stripped = rollup(app_name, derive_id(key))  # format 1, the proof left out
    resp = server.post(stripped)
    assert resp.status_code == 400 and resp.json()["field"] == "machine_id"
    mismatched = {**rollup2(app_name, key), "machine_key": new_key()}
    resp = server.post(mismatched)
    assert resp.status_code == 400 and resp.json()["field"] == "machine_key"
    assert report_json(server, app_name)["counts"] == []


def test_a_report_id_read_in_show_cannot_be_taken_first(server: Server, app_name: str) -> None:
    victim, forger = new_key(), new_key()
    rid = new_id()  # what `show` printed before the send
    taken = server.post(rollup2(app_name, forger, reports=[{"id": rid, "day": day(-1), "counts": {"build": 0}}]))
    assert taken.json()["stored"] == 1
    real = server.post(rollup2(app_name, victim, reports=[{"id": rid, "day": day(-1), "counts": {"build": 30}}]))
    assert real.json() == {"stored": 1, "duplicates": 0, "refused": 0}
    assert totals(server, app_name) == {(day(-1), "build"): (30, 2)}
    # The machine's own resend is still a duplicate.
    again = server.post(rollup2(app_name, victim, reports=[{"id": rid, "day": day(-1), "counts": {"build": 30}}]))
    assert again.json() == {"stored": 0, "duplicates": 1, "refused": 0}


def test_a_flood_of_deletion_requests_for_random_ids_counts_nothing(server: Server, app_name: str) -> None:
    assert server.post(rollup2(app_name)).json()["stored"] == 1
    for _ in range(100):
        assert server.post(forget2(app_name, new_key())).json() == {"forgotten": True}  # valid proofs, unknown ids
        assert server.post(forget(app_name, new_id())).json() == {"forgotten": True}  # format 1, random ids
    assert _deletions(server, app_name) == 0
    assert sum(t for t, _ in totals(server, app_name).values()) == 120


def test_the_machines_own_deletion_request_erases_it_and_refuses_its_reports(server: Server, app_name: str) -> None:
    key = new_key()
    assert server.post(rollup2(app_name, key)).json()["stored"] == 1
    assert server.post(forget2(app_name, key)).json() == {"forgotten": True}
    assert report_json(server, app_name)["counts"] == []
    assert _deletions(server, app_name) == 1
    refused = server.post(rollup2(app_name, key))
    assert refused.status_code == 403 and refused.json()["field"] == "machine_id"
    assert server.post(rollup2(app_name, new_key())).json()["stored"] == 1  # a new identity is welcome


def test_format_1_deletion_erases_a_random_id_but_does_not_silence_it(server: Server, app_name: str) -> None:
    # Old clients cannot prove anything: their request is honoured (it may be the user's), but
    # a 403 would make an old client delete its reports, so the id is never refused.
    machine = new_id()
    old = rollup(app_name, machine)
    assert server.post(old).json()["stored"] == 1
    assert server.post(forget(app_name, machine)).json() == {"forgotten": True}
    assert report_json(server, app_name)["counts"] == []
    assert _deletions(server, app_name) == 1
    assert server.post(old).json() == {"stored": 0, "duplicates": 1, "refused": 0}  # a late resend
    fresh = server.post(rollup(app_name, machine, reports=[{"id": new_id(), "day": day(-1), "counts": {"x": 1}}]))
    assert fresh.status_code == 200 and fresh.json()["stored"] == 1
