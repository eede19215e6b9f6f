"""Delivery against a real HTTP server on 127.0.0.1: every response class, bounded time, exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from receiver import Receiver
from sender_setup import add_lines, day, make_app, totals

from telemetry_rollup import _sender

DATA = {(day(-1), "build"): 30, (day(-1), "lint"): 90, (day(-2), "build"): 5, (day(0), "today"): 1}


def pending(store) -> int:  # type: ignore[no-untyped-def]
    gen = _sender.Pipeline(store).recover()
    return len(_sender.Pipeline(store).pending_reports(gen))


def test_2xx_delivers_completed_days_once_and_keeps_today(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, DATA)
    res = _sender.run(store, timeout=5, force=True)
    assert res.sent is not None and res.sent.sent == 2 and res.sent.kept == 0
    assert receiver.totals() == {"build": 35, "lint": 90}
    body = json.loads(receiver.bodies[0])
    assert sorted(body) == [
        "app",
        "app_version",
        "arch",
        "ci",
        "lib_version",
        "machine_id",
        "machine_key",
        "os",
        "python",
        "reports",
        "schema",
    ]
    assert body["app"] == "acme" and body["app_version"] == "1.0" and body["schema"] == 2
    assert pending(store) == 0
    # a second run sends nothing more; today's count is still waiting
    _sender.run(store, timeout=5, force=True)
    assert len(receiver.bodies) == 1
    res = _sender.run(store, timeout=5, force=True, include_today=True)
    assert receiver.totals() == {"build": 35, "lint": 90, "today": 1}
    state = store.state()
    assert state["totals"]["reports_sent"] == 3 and state["last_attempt"]["result"] == "sent"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_final_4xx_drops_and_records_never_retries(home: Path, receiver: Receiver, status: int) -> None:
    receiver.behaviour, receiver.status = "status", status
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, DATA)
    res = _sender.run(store, timeout=5, force=True)
    assert res.sent is not None and res.sent.rejected == 2
    assert pending(store) == 0
    assert store.state()["totals"]["reports_rejected"] == 2
    n = receiver.connections
    _sender.run(store, timeout=5, force=True)
    assert receiver.connections == n


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 307])
def test_retryable_answers_keep_reports_and_back_off(home: Path, receiver: Receiver, status: int) -> None:
    receiver.behaviour, receiver.status = "status", status
    receiver.headers = {"Retry-After": "300"} if status == 429 else {}
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, DATA)
    before = time.time()
    res = _sender.run(store, timeout=5, force=True)
    assert res.sent is not None and res.sent.kept == 2 and res.sent.sent == 0
    assert pending(store) == 2
    nxt = store.state()["next_attempt_at"]
    assert nxt >= before + (300 if status == 429 else 48)
    # an automatic pass respects the back-off; an explicit one tries now
    n = receiver.connections
    assert _sender.run(store, timeout=5).skipped.startswith("backing off")
    assert receiver.connections == n
    receiver.behaviour = "ok"
    _sender.run(store, timeout=5, force=True)
    assert receiver.totals() == {"build": 35, "lint": 90}
    assert store.state()["next_attempt_at"] == 0


@pytest.mark.parametrize("behaviour", ["hang", "trickle"])
def test_a_server_that_never_answers_cannot_hold_the_call(home: Path, receiver: Receiver, behaviour: str) -> None:
    receiver.behaviour = behaviour
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, DATA)
    t0 = time.monotonic()
    res = _sender.run(store, timeout=1.0, force=True)
    assert time.monotonic() - t0 < 2.0
    if behaviour == "hang":
        assert res.sent is not None and res.sent.kept == 2
        assert pending(store) == 2
    else:
        # The status line (200) arrived and only the body trickles: the receiver answered, so the
        # reports are acknowledged (as when it hangs up after its headers, test_faults.py); the
        # trickle is cut at the deadline instead of being read, and never resent forever.
        assert res.sent is not None and res.sent.sent == 2 and res.sent.kept == 0
        assert pending(store) == 0


def test_refused_connection_keeps_reports(home: Path) -> None:
    store = make_app(home, endpoint="http://127.0.0.1:9/v1/rollups")
    add_lines(store, DATA)
    res = _sender.run(store, timeout=3, force=True)
    assert res.sent is not None and res.sent.kept == 2 and pending(store) == 2


def test_store_then_hang_up_is_resent_with_the_same_ids(home: Path, receiver: Receiver) -> None:
    receiver.behaviour = "store_then_hangup"
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, DATA)
    res = _sender.run(store, timeout=3, force=True)
    assert res.sent is not None and res.sent.kept == 2
    receiver.behaviour = "ok"
    _sender.run(store, timeout=3, force=True)
    assert set(receiver.deliveries.values()) == {2}  # the same ids twice ...
    assert receiver.totals() == {"build": 35, "lint": 90}  # ... so a deduplicating receiver counts once


def test_many_reports_go_in_bounded_requests(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    data = {(day(-d), f"n{i}"): 1 for d in range(1, 31) for i in range(1500)}
    for d in range(1, 31):
        add_lines(store, {k: v for k, v in data.items() if k[0] == day(-d)}, spill=True)
    res = _sender.run(store, timeout=20, force=True)
    assert res.sent is not None and res.sent.sent == 60 and res.sent.kept == 0
    for body in receiver.bodies:
        assert len(body) <= 64 * 1024 and len(json.loads(body)["reports"]) <= 50
    assert receiver.totals() == totals(data)


def test_reports_older_than_30_days_are_dropped_and_recorded(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-40), "old"): 7, (day(-1), "new"): 1})
    _sender.run(store, timeout=5, force=True)
    _sender.run(store, timeout=5, force=True, include_today=True)
    assert receiver.totals() == {"new": 1, "_dropped": 7}


def test_local_mode_and_missing_endpoint_never_connect(home: Path, receiver: Receiver) -> None:
    store = make_app(home, endpoint=receiver.url, mode="local")
    add_lines(store, DATA)
    res = _sender.run(store, timeout=5, force=True)
    assert res.sent is None and "local" in res.skipped
    assert pending(store) == 2 and receiver.connections == 0
