"""One huge ``count(name, n)`` (issue 12.5): its cost does not depend on n, it never pushes real
counts out of the outbox, and values above 2**63 are clamped, never lost at decode."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import Receiver, clean_env, day, plant, run_cli
from helpers import run_py

from telemetry_rollup import _fs, _sender, _store
from telemetry_rollup._codec import encode_report
from telemetry_rollup._names import CLAMPED, DROPPED, MAX_COUNT

HOST = """
import telemetry_rollup as tr
tr.configure("acme", endpoint={url!r}, flush_interval=0)
tr.count("build", 42)
tr.count("bytes", 10**15)
tr.count("bytes", 10**15)
tr.count("huge", 10**30)
"""


def test_a_huge_count_is_one_report_and_keeps_the_real_counts(home: Path) -> None:
    with Receiver() as receiver:
        run_py(HOST.format(url=receiver.url), env=clean_env(home, ACME_TELEMETRY="on"))
        shown = run_cli(home, "show", "--raw", "--app", "acme", "--include-today", timeout=120)
        assert shown.returncode == 0, shown.stderr
        bodies = [json.loads(line) for line in shown.stdout.splitlines()]
        assert len(bodies) == 1 and len(bodies[0]["reports"]) == 1
        status = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
        assert status["reserved"]["_dropped"] == 0
        assert run_cli(home, "flush", "--app", "acme", "--include-today", ACME_TELEMETRY="on").returncode == 0
        counts = receiver.totals()
    assert counts.pop("_run:script") == 1
    assert counts == {"build": 42, "bytes": MAX_COUNT, "huge": MAX_COUNT, CLAMPED: MAX_COUNT}


def test_values_above_two_to_the_63_are_clamped_not_lost(home: Path) -> None:
    lines = {(day(-1), "build"): 1, (day(-1), "a"): 2**63 + 1, (day(-1), "b"): 2**64, (day(-1), "c"): 10**40}
    plant(home, "acme", lines)
    status = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
    assert status["reserved"]["_corrupt"] == 0
    with Receiver() as receiver:
        d = home / "acme"
        cfg = json.loads((d / "config.json").read_text())
        cfg["endpoint"] = receiver.url
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "notice").write_text("0")
        res = run_cli(home, "flush", "--app", "acme")
        assert res.returncode == 0, res.stderr
        assert receiver.totals() == {"build": 1, "a": MAX_COUNT, "b": MAX_COUNT, "c": MAX_COUNT, CLAMPED: MAX_COUNT}


def _outbox_with(store: _store.AppStore, reports: list[dict[str, object]]) -> None:
    pipe = _sender.Pipeline(store)
    gen = pipe.recover()
    for r in reports:
        _fs.atomic_write(gen / "reports" / f"{r['id']}.json", encode_report(r))


def test_a_full_outbox_drops_dropped_only_reports_before_real_counts(home: Path) -> None:
    """The old rule dropped the oldest reports, so five days of real counts went, and 200
    ``_dropped``-only pieces (the remains of earlier drops) stayed and were sent."""
    d = plant(home, "acme", {(day(-1), "lint"): 7}, endpoint="https://telemetry.example.com/v1/rollups")
    store = _store.AppStore(d)
    real = [{"id": f"00000000-0000-4000-8000-{i:012d}", "day": day(-5), "counts": {"build": 42}} for i in range(5)]
    reserved = [{"id": f"10000000-0000-4000-8000-{i:012d}", "day": day(-4), "counts": {DROPPED: 1}} for i in range(200)]
    _outbox_with(store, real + reserved)
    res = _sender.run(store, timeout=10, force=True, environ=clean_env(home, ACME_TELEMETRY="local"))
    assert res.built is not None and res.built.new_reports == 1
    pipe = _sender.Pipeline(store)
    kept = [r for _, r in pipe.pending_reports(pipe.recover())]
    assert len(kept) == 200
    by_name: dict[str, int] = {}
    for r in kept:
        for n, c in r["counts"].items():
            by_name[n] = by_name.get(n, 0) + c
    assert by_name["build"] == 5 * 42 and by_name["lint"] == 7  # every real count is still there
    assert by_name[DROPPED] == 200 - 6  # six reserved-only reports made room
    # and what they held is not forgotten: it waits in today's _dropped
    status = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
    assert status["reserved"]["_dropped"] == 200
