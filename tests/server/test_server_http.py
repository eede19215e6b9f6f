"""The endpoint through a real server process and real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from server_helpers import Server, day, forget, forget2, new_id, new_key, report_json, rollup, rollup2, totals

from telemetry_rollup.server.store import open_store

JSON = {"Content-Type": "application/json"}


def test_index_and_health(server: Server) -> None:
    index = requests.get(server.url + "/", timeout=5)
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/plain")
    assert "TELEMETRY.md" in index.text and "/v1/rollups" in index.text
    health = requests.get(server.url + "/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok\n")
    assert "server" not in {k.lower() for k in health.headers}


def test_store_and_report(server: Server, app_name: str) -> None:
    body = rollup(app_name)
    resp = server.post(body)
    assert resp.status_code == 200
    assert resp.json() == {"stored": 1, "duplicates": 0, "refused": 0}
    assert totals(server, app_name) == {(day(-1), "build"): (30, 1), (day(-1), "lint"): (90, 1)}


def test_resend_is_a_duplicate_and_changes_nothing(server: Server, app_name: str) -> None:
    body = rollup(app_name)
    assert server.post(body).json()["stored"] == 1
    for _ in range(3):
        resp = server.post(body)
        assert resp.status_code == 200
        assert resp.json() == {"stored": 0, "duplicates": 1, "refused": 0}
    assert totals(server, app_name)[(day(-1), "build")] == (30, 1)


def test_concurrent_identical_requests_store_once(server: Server, app_name: str) -> None:
    body = rollup(app_name, reports=[{"id": new_id(), "day": day(-d), "counts": {"n": d}} for d in (1, 2, 3)])
    barrier = threading.Barrier(12)
    answers: list[dict[str, Any]] = []

    def send() -> None:
        barrier.wait()
        resp = server.post(body)
        assert resp.status_code == 200
        answers.append(resp.json())

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 12
    assert sum(a["stored"] for a in answers) == 3
    assert sum(a["duplicates"] for a in answers) == 33
    assert {k: v for k, v in totals(server, app_name).items()} == {
        (day(-1), "n"): (1, 1),
        (day(-2), "n"): (2, 1),
        (day(-3), "n"): (3, 1),
    }


def test_distinct_machines_and_environment(server: Server, app_name: str) -> None:
    for machine, version, python in ((new_id(), "1.0", "3.9"), (new_id(), "2.0", "3.12")):
        for _ in range(2):  # two reports per machine, same day
            body = rollup(app_name, machine, app_version=version, python=python)
            assert server.post(body).status_code == 200
    data = report_json(server, app_name)
    build = [r for r in data["counts"] if r["name"] == "build"]
    assert build == [{"app": app_name, "day": day(-1), "name": "build", "total": 120, "machines": 2}]
    assert sorted((r["value"], r["machines"]) for r in data["machines"]["app_version"]) == [
        ("1.0", 1),
        ("2.0", 1),
    ]
    assert sorted(r["value"] for r in data["machines"]["python"]) == ["3.12", "3.9"]


def test_all_or_nothing_per_request(server: Server, app_name: str) -> None:
    good = {"id": new_id(), "day": day(-1), "counts": {"a": 1}}
    bad = {"id": new_id(), "day": day(-1), "counts": {"a": -1}}
    resp = server.post(rollup(app_name, reports=[good, bad]))
    assert resp.status_code == 400
    assert resp.json()["field"] == "reports.1.counts"
    assert totals(server, app_name) == {}
    # The good report was not half-stored: sending it alone now stores it.
    assert server.post(rollup(app_name, reports=[good])).json()["stored"] == 1


BAD_FIELDS: list[tuple[str, Any, str]] = [
    ("schema", 3, "schema"),
    ("schema", "1", "schema"),
    ("schema", 2, "machine_key"),  # format 2 needs the proof
    ("app", "bad app", "app"),
    ("machine_id", "ABC", "machine_id"),
    ("reports", [], "reports"),
    ("extra", 1, "extra"),
    ("ci", 1, "ci"),
    # Days as offsets, resolved when the test runs: a date computed at collection is a day off
    # for a run that crosses midnight UTC (day(2) became tomorrow, which is accepted).
    ("reports", [{"id": new_id(), "day": -36, "counts": {}}], "reports.0.day"),
    ("reports", [{"id": new_id(), "day": 2, "counts": {}}], "reports.0.day"),
    ("reports", [{"id": new_id(), "day": day(-1), "counts": {"a": 10**9 + 1}}], "reports.0.counts"),
    ("reports", [{"id": new_id(), "day": day(-1), "counts": {"a b": 1}}], "reports.0.counts"),
    ("reports", [{"id": new_id(), "day": day(-1), "counts": {}, "x": 1}], "reports.0.x"),
]


@pytest.mark.parametrize(("key", "value", "field"), BAD_FIELDS)
def test_400_names_the_field(server: Server, app_name: str, key: str, value: Any, field: str) -> None:
    body = rollup(app_name)
    if key == "reports" and value and isinstance(value[0].get("day"), int):
        value = [{**value[0], "day": day(value[0]["day"])}]
    body[key] = value
    resp = server.post(body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field
    assert resp.json()["error"]
    assert report_json(server, app_name)["counts"] == []


def test_day_window_edges_are_accepted(server: Server, app_name: str) -> None:
    reports = [{"id": new_id(), "day": day(d), "counts": {"x": 1}} for d in (-35, 0, 1)]
    assert server.post(rollup(app_name, reports=reports)).json()["stored"] == 3


def test_transport_rejections(server: Server) -> None:
    body = json.dumps(rollup("acme")).encode()
    # 411: no Content-Length, including a chunked body.
    status, _, payload = server.post_raw(body, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert status == 411 and payload["error"]
    status, _, _ = server.post_raw(b"", {"Content-Type": "application/json"})
    assert status == 411
    # 413: checked from Content-Length before the body is read.
    big = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    status, _, _ = server.post_raw(big, {"Content-Type": "application/json", "Content-Length": str(len(big))})
    assert status == 413
    resp = requests.post(server.url + "/v1/rollups", data=big, headers=JSON, timeout=10)
    assert resp.status_code == 413
    # 415: any other content type.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        resp = requests.post(server.url + "/v1/rollups", data=body, headers={"Content-Type": ctype}, timeout=10)
        assert resp.status_code == 415, ctype
    resp = requests.post(server.url + "/v1/rollups", data=body, timeout=10)  # no content type
    assert resp.status_code == 415
    # 400: not JSON, not an object, deeply nested.
    for data in (b"{", b"\xff\xfe", b"[1, 2]", b"null", b"[" * 5000 + b"]" * 5000):
        resp = requests.post(server.url + "/v1/rollups", data=data, headers=JSON, timeout=10)
        assert resp.status_code == 400, data[:10]
        assert "error" in resp.json()
    # Charset parameter is fine.
    resp = requests.post(
        server.url + "/v1/rollups",
        data=json.dumps(rollup("acme-charset")).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=10,
    )
    assert resp.status_code == 200


def test_other_methods_and_paths_are_json_errors(server: Server) -> None:
    resp = requests.get(server.url + "/v1/rollups", timeout=5)
    assert resp.status_code == 405 and "error" in resp.json()
    resp = requests.get(server.url + "/nope", timeout=5)
    assert resp.status_code == 404 and "error" in resp.json()


def test_forget(server: Server, app_name: str) -> None:
    gone, kept = new_key(), new_key()
    old = rollup2(app_name, gone)
    assert server.post(old).json()["stored"] == 1
    assert server.post(rollup2(app_name, kept)).json()["stored"] == 1
    for _ in range(2):  # idempotent
        resp = server.post(forget2(app_name, gone))
        assert resp.status_code == 200
        assert resp.json() == {"forgotten": True}
    assert totals(server, app_name) == {(day(-1), "build"): (30, 1), (day(-1), "lint"): (90, 1)}
    resp = server.post(rollup2(app_name, gone))
    assert resp.status_code == 403
    assert resp.json()["field"] == "machine_id"
    resp = server.post(old)  # a late resend is refused too, and stores nothing
    assert resp.status_code == 403
    data = report_json(server, app_name)
    assert [(r["day"], r["n"]) for r in data["deletions"]] == [(day(0), 1)]
    assert sum(r["machines"] for r in data["machines"]["os"]) == 1
    # Forgetting a machine of another app does nothing here.
    assert server.post(forget2(app_name + "-other", kept)).status_code == 200
    assert server.post(rollup2(app_name, kept)).status_code == 200


def test_openapi_documents_the_body(server: Server) -> None:
    doc = requests.get(server.url + "/openapi.json", timeout=5).json()
    op = doc["paths"]["/v1/rollups"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Body"}
    schemas = doc["components"]["schemas"]
    assert {"RollupRequest", "ForgetRequest", "Report", "Body"} <= set(schemas)
    assert schemas["RollupRequest"]["additionalProperties"] is False
    assert {"400", "411", "413", "415", "429", "403"} <= set(op["responses"])


# -- servers of their own ----------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'own.db'}"


def test_allowlist(tmp_path: Path, sqlite_url: str) -> None:
    config = {
        "limits": {"per_machine": 1000, "per_address": 1000},
        "apps": {"acme": {"counters": ["build", "cmd.*"], "min_version": "1.2"}, "free": {}},
    }
    server = Server(sqlite_url, tmp_path, config=config)
    try:
        reports = [
            {
                "id": new_id(),
                "day": day(-1),
                "counts": {"build": 2, "cmd.run": 3, "lint": 4, "_dropped": 1},
            }
        ]
        body = rollup("acme", reports=reports)
        resp = server.post(body)
        assert resp.json() == {"stored": 1, "duplicates": 0, "refused": 2}
        assert server.post(body).json() == {"stored": 0, "duplicates": 1, "refused": 2}
        assert totals(server, "acme") == {(day(-1), "build"): (2, 1), (day(-1), "cmd.run"): (3, 1)}

        old = rollup("acme", app_version="1.1.9")
        assert server.post(old).json() == {"stored": 1, "duplicates": 0, "refused": 2}
        assert server.post(rollup("acme", app_version=None)).json()["refused"] == 2

        stranger = rollup("secret-app-name")
        assert server.post(stranger).json() == {"stored": 1, "duplicates": 0, "refused": 2}
        assert server.post(stranger).json()["duplicates"] == 1
        assert server.post(forget("secret-app-name", stranger["machine_id"])).json() == {"forgotten": True}
        free = rollup("free", reports=[{"id": new_id(), "day": day(-1), "counts": {"deploy": 1}}])
        assert server.post(free).json()["refused"] == 0

        data = json.loads(server.report("--format", "json").stdout)
        refusals = {(r["app"], r["reason"]): r["n"] for r in data["refusals"]}
        assert refusals == {
            ("acme", "counter_not_allowed"): 2,
            ("acme", "app_version_too_old"): 4,
            ("(apps not allowed)", "app_not_allowed"): 2,
        }
        # The old version's machine and the stranger's app name are nowhere.
        assert [r["value"] for r in data["machines"]["app_version"]] == ["1.4.0", "1.4.0"]
        assert {r["app"] for r in data["machines"]["os"]} == {"acme", "free"}
        assert "lint" not in json.dumps(data)
    finally:
        server.stop()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("own.db*"))
    assert b"secret-app-name" not in raw
    assert b"lint" not in raw


def test_rate_limits(tmp_path: Path, sqlite_url: str) -> None:
    config = {"limits": {"per_machine": 3, "per_address": 5, "window_seconds": 60}}
    server = Server(sqlite_url, tmp_path, config=config)
    try:
        machine = new_id()
        codes = [server.post(rollup("acme", machine)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        resp = server.post(rollup("acme", machine))
        assert resp.status_code == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert resp.json()["error"]
        # Per address: 5 requests a window from 127.0.0.1 are used up now (4 + 1 above).
        resp = server.post(rollup("acme"))
        assert resp.status_code == 429 and "Retry-After" in resp.headers
        # Another client address has its own budget.
        body = json.dumps(rollup("acme")).encode()
        status, _, _ = server.post_raw(
            body,
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
            source="127.0.0.2",
        )
        assert status == 200
    finally:
        server.stop()


def test_privacy_no_address_or_header_is_stored_or_logged(tmp_path: Path, sqlite_url: str) -> None:
    server = Server(sqlite_url, tmp_path, config={"limits": {"per_machine": 2}})
    marker_agent = "MarkerAgent/7.7.7-zq"
    machine = new_id()
    try:
        for i in range(4):  # two stored, then 429s
            body = json.dumps(rollup("acme", machine)).encode()
            headers = {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "User-Agent": marker_agent,
                "X-Forwarded-For": "203.0.113.77",
                "X-Marker-Header": "hdr-marker-zq",
            }
            status, _, _ = server.post_raw(body, headers, source="127.0.0.42")
            assert status == (200 if i < 2 else 429)
        bad = b"{not json"
        server.post_raw(
            bad,
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(bad)),
                "User-Agent": marker_agent,
            },
            source="127.0.0.42",
        )
        server.post_raw(b"{}", {"Content-Type": "text/plain", "Content-Length": "2"}, source="127.0.0.42")
    finally:
        server.stop()
    files = list(tmp_path.glob("own.db*"))
    assert files
    stored = b"".join(p.read_bytes() for p in files)
    logged = server.output().encode()
    assert machine.encode() in stored  # the search itself works
    for marker in (b"127.0.0.42", b"MarkerAgent", b"203.0.113.77", b"hdr-marker-zq", b"X-Marker"):
        assert marker not in stored, marker
        assert marker not in logged, marker
    store = open_store(sqlite_url, create=False)
    try:
        assert len(store.report_ids("acme")) == 2
    finally:
        store.close()
