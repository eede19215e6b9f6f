"""Retention: pruning deletes old raw rows and keeps the daily figures, by the store, by
``prune --older-than`` and by a server with ``[retention] days``; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from oracle import SINCE, Sent, figures, raw_figures, store_figures, workload
from server_helpers import Server, day, new_id, report_json, run_cli, today

from telemetry_rollup.server.config import ConfigError, parse_config
from telemetry_rollup.server.models import MAX_DAYS_AHEAD, MAX_DAYS_OLD
from telemetry_rollup.server.store import MIN_RETENTION_DAYS, Environment, Ingest, ReportRows, SQLStore

ENV = Environment("1.4.0", "0.1.0", "linux", "x86_64", "3.11", False)


def raw_days(store: SQLStore, before: str) -> dict[str, int]:
    """Rows of each raw table for days before ``before`` (every app)."""
    with store.reading() as tx:
        return {
            table: int(tx.execute(f"SELECT COUNT(*) FROM {table} WHERE day < ?", (before,)).fetchall()[0][0])
            for table in ("machine_days", "reports", "seen", "names", "name_days")
        }


def test_no_day_still_open_to_reports_can_be_pruned() -> None:
    assert MIN_RETENTION_DAYS > MAX_DAYS_OLD + MAX_DAYS_AHEAD


def test_prune_keeps_the_daily_figures_and_deletes_the_raw_rows(store: SQLStore, app_name: str) -> None:
    batches, sent = workload(21, app_name, days=60)
    for b in batches:
        store.ingest(b, time.time())
    store.ingest(Ingest(app_name, new_id(), None, [ReportRows(new_id(), day(-50), {}, {"app_not_allowed": 1})]), 0)
    cutoff = day(-40)
    assert raw_days(store, cutoff)["machine_days"] > 0
    before = store_figures(store, app_name)
    pruned = store.prune(40, today())
    assert pruned == len({(s.machine, s.day) for s in sent if s.day < cutoff})
    assert store_figures(store, app_name) == before  # the report and dashboard read these
    assert raw_days(store, cutoff) == dict.fromkeys(("machine_days", "reports", "seen", "names", "name_days"), 0)
    assert raw_figures(store, app_name) == figures(app_name, [s for s in sent if s.day >= cutoff])
    assert store.prune(40, today()) == 0
    with pytest.raises(ValueError, match="at least 40"):
        store.prune(39, today())


def test_a_deletion_after_pruning_takes_the_machine_out_of_the_days_still_held(store: SQLStore, app_name: str) -> None:
    machine, other = new_id(), new_id()
    sent = []
    for m in (machine, other):
        for offset in (-45, -2):
            counts = {"build": 3 if m == machine else 5}
            store.ingest(Ingest(app_name, m, ENV, [ReportRows(new_id(), day(offset), counts)]), time.time())
            sent.append(Sent(m, day(offset), counts, ENV))
    store.prune(40, today())
    assert store.forget(app_name, machine, time.time(), day(0))
    recent = (day(-40), "9999-12-31")
    assert store_figures(store, app_name, *recent) == figures(app_name, [s for s in sent[2:] if s.day >= recent[0]])
    # The pruned day holds only figures that name no machine; they keep the machine's share.
    assert store.daily_counts(app_name, SINCE, day(-41)) == [(app_name, day(-45), "build", 8, 2)]


def _fill(store: SQLStore, app: str) -> list[Sent]:
    batches, sent = workload(22, app, machines=8, days=50)
    store.ingest_many(batches, time.time())
    return sent


def test_prune_command(db_url: str, store: SQLStore, app_name: str) -> None:
    sent = _fill(store, app_name)
    shown = report_json_url(db_url, app_name, 60)
    bad = run_cli("prune", "--db", db_url, "--older-than", "39")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--older-than must be 40" in bad.stderr
    result = run_cli("prune", "--db", db_url, "--older-than", "40")
    assert result.returncode == 0, result.stderr
    before = (today() - timedelta(days=40)).isoformat()
    assert result.stdout.startswith("pruned the raw rows of ") and before in result.stdout
    assert raw_days(store, before)["machine_days"] == 0
    assert any(s.day < before for s in sent)
    assert report_json_url(db_url, app_name, 60) == shown  # pruned days still in the report
    assert run_cli("prune", "--db", db_url).returncode == 2  # --older-than is required


def report_json_url(db_url: str, app: str, days: int) -> dict[str, object]:
    result = run_cli("report", "--db", db_url, "--app", app, "--days", str(days), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_the_server_prunes_by_its_config(db_url: str, store: SQLStore, app_name: str, tmp_path: Path) -> None:
    _fill(store, app_name)
    before = day(-40)
    shown = report_json_url(db_url, app_name, 60)
    assert raw_days(store, before)["machine_days"] > 0
    server = Server(db_url, tmp_path, config={"retention": {"days": 40}})
    try:
        deadline = time.monotonic() + 30
        while raw_days(store, before)["machine_days"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert raw_days(store, before)["machine_days"] == 0
        assert report_json(server, app_name, 60) == shown
    finally:
        server.stop()
    assert "Traceback" not in server.output()


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({"days": 39}, "at least 40"),
        ({"days": "90"}, "expected int"),
        ({"days": True}, "expected int"),
        ({}, "give days"),
        ({"days": 90, "hours": 1}, "unknown key"),
        (90, "expected dict"),
    ],
)
def test_retention_config_errors(retention: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"retention": retention})


def test_retention_config() -> None:
    assert parse_config({"retention": {"days": 90}}).retention_days == 90
    assert parse_config({}).retention_days is None
