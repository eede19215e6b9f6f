"""The machine's key and id on the client: made, sent as proof, never shown, reset on refusal.

Against the recording receiver (what went on the wire) and the reference server (what a
refusal does), with real ``python -m telemetry_rollup`` processes.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from cli_helpers import Receiver, day, listing, main_inproc, plant, run_cli
from helpers import identity

sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
from server_helpers import Server, forget2, new_id, report_json, rollup, totals

from telemetry_rollup._identity import derive_id, is_derived_id
from telemetry_rollup._sender import Pipeline
from telemetry_rollup._store import AppStore


def _sent_once(home: Path, url: str, counts: dict[tuple[str, str], int]) -> None:
    plant(home, "acme", counts, endpoint=url)
    (home / "acme" / "notice").write_text("0")
    res = run_cli(home, "flush", "--app", "acme")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_key_is_made_at_the_first_send_sent_as_proof_and_shown_nowhere(home: Path, receiver: Receiver) -> None:
    _sent_once(home, receiver.url, {(day(-1), "build"): 3})
    key_file = home / "acme" / "machine_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    mid, key = identity(home / "acme")
    assert is_derived_id(mid) and mid == derive_id(key)
    (body,) = receiver.json_bodies()
    assert (body["schema"], body["machine_id"], body["machine_key"]) == (2, mid, key)

    # Everything a person is shown names the id, never the key.
    plant(home, "acme", {(day(-1), "lint"): 1}, endpoint=receiver.url)
    shown = []
    for args in (["status"], ["status", "--json"], ["show", "--app", "acme"], ["show", "--app", "acme", "--raw"]):
        res = run_cli(home, *args)
        assert res.returncode == 0, res.stderr
        shown.append(res.stdout + res.stderr)
    page = home.parent / "view.html"
    assert run_cli(home, "view", "--no-open", "--out", str(page)).returncode == 0
    shown.append(page.read_text())
    debug = run_cli(home, "flush", "--app", "acme", TELEMETRY_ROLLUP_DEBUG="1")
    assert debug.returncode == 0 and "POST " in debug.stderr and '"machine_key"' in debug.stderr
    shown.append(debug.stdout + debug.stderr)
    assert len(receiver.bodies) == 2 and key.encode() in receiver.bodies[1]  # the debug run did send it
    reset = run_cli(home, "reset-id", "--app", "acme")
    shown.append(reset.stdout + reset.stderr)
    new_mid, new_key = identity(home / "acme")
    assert new_key != key and new_mid in reset.stdout
    off = run_cli(home, "off", "--app", "acme")
    shown.append(off.stdout + off.stderr)
    assert new_key.encode() in receiver.bodies[-1]  # the deletion request proves itself too
    for text in shown:
        assert key not in text and new_key not in text
    assert any(mid in text for text in shown[:3])
    assert "machine_key" in off.stdout  # deleted, and said so
    assert listing(home / "acme") == {"mode.json"}


def test_a_refused_machine_gets_a_new_identity_and_keeps_its_reports(home: Path, tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    try:
        url = server.url + "/v1/rollups"
        _sent_once(home, url, {(day(-2), "build"): 5})
        old_id, old_key = identity(home / "acme")
        # The machine's own deletion request arrives from elsewhere (a copy of this data
        # directory, a cloned VM image, switched off there): the server now refuses the id.
        assert server.post(forget2("acme", old_key)).json() == {"forgotten": True}
        plant(home, "acme", {(day(-1), "build"): 7}, endpoint=url)
        refused = run_cli(home, "flush", "--app", "acme")
        assert refused.returncode == 1 and "HTTP 403" in refused.stdout and "kept 1" in refused.stdout
        new_id_, _ = identity(home / "acme")
        assert new_id_ != old_id
        store = AppStore(home / "acme")
        assert len(Pipeline(store).pending_reports(Pipeline(store).recover())) == 1  # kept, not deleted
        st = json.loads(run_cli(home, "status", "--app", "acme", "--json").stdout)["apps"][0]
        assert st["totals"]["reports_rejected"] == 0 and st["machine_id"] == new_id_
        again = run_cli(home, "flush", "--app", "acme")
        assert again.returncode == 0 and "sent 1" in again.stdout, again.stdout
        assert totals(server, "acme") == {(day(-1), "build"): (7, 1)}
    finally:
        server.stop()


def test_a_server_that_knows_only_format_1_keeps_the_reports(home: Path, receiver: Receiver) -> None:
    # An older reference server answers format 2 with 400 naming "schema": upgrade pending.
    receiver.behaviour, receiver.status = "status", 400
    receiver.answer = {"error": "schema must be 1", "field": "schema"}
    _sent = run_cli(home, "flush")  # nothing yet
    assert _sent.returncode == 0
    plant(home, "acme", {(day(-1), "build"): 3}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    res = run_cli(home, "flush", "--app", "acme")
    assert res.returncode == 1 and "kept 1" in res.stdout and "server too old" in res.stdout
    receiver.behaviour, receiver.answer = "ok", None
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    assert receiver.totals() == {"build": 3}


def test_an_id_of_an_older_version_is_replaced_and_forgotten_by_off(home: Path, tmp_path: Path) -> None:
    # Before the key, the library kept a random id (uuid4) in machine_id and sent format 1.
    server = Server(f"sqlite:///{tmp_path / 'o.db'}", tmp_path)
    try:
        url = server.url + "/v1/rollups"
        legacy = "6f1c1a4e-7c8e-4d55-9a51-3d1c7c0a8a11"
        old = rollup("acme", legacy, [{"id": new_id(), "day": day(-2), "counts": {"build": 4}}])
        assert server.post(old).json()["stored"] == 1  # what the older version sent
        plant(home, "acme", {(day(-1), "build"): 6}, endpoint=url)
        (home / "acme" / "machine_id").write_text(legacy + "\n")
        (home / "acme" / "notice").write_text("0")
        code, out, _ = main_inproc("status", "--app", "acme")
        assert code == 0 and legacy in out  # still the id shown until the next send
        assert run_cli(home, "flush", "--app", "acme").returncode == 0
        mid, _ = identity(home / "acme")
        assert mid != legacy and not (home / "acme" / "machine_id").exists()
        assert json.loads((home / "acme" / "machine_key").read_text())["legacy_id"] == legacy
        assert totals(server, "acme") == {(day(-2), "build"): (4, 1), (day(-1), "build"): (6, 1)}
        res = run_cli(home, "off", "--app", "acme")
        assert res.returncode == 0 and "acknowledged" in res.stdout
        data = report_json(server, "acme")
        assert data["counts"] == [] and sum(r["n"] for r in data["deletions"]) == 2  # both ids erased
    finally:
        server.stop()
