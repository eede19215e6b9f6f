"""Both pages in a real browser: headless Chromium (the system package, /usr/bin/chromium) loads
the dashboard from a real server on 127.0.0.1 fed by real client processes on three "machines"
(three data roots), and the page ``view`` writes; the DOM Chromium builds must hold the charts
with the right numbers, no request of the page may leave 127.0.0.1 (Chromium's net log), and
screenshots are taken (``UPDATE_SCREENSHOTS=1`` refreshes docs/dashboard.png and docs/view.png).

Chromium is driven with its own ``--headless --dump-dom`` / ``--screenshot``: no Playwright.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True
    )

sys.path.insert(0, str(Path(__file__).parent / "server"))
from server_helpers import Server  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: ``UPDATE_SCREENSHOTS=1`` copies the screenshots over docs/*.png (for README); otherwise they
#: stay under the test's tmp_path, so a test run leaves the checkout as it was.
UPDATE_DOCS = os.environ.get("UPDATE_SCREENSHOTS") == "1"


def screenshot(tmp: Path, url: str, name: str, size: str) -> None:
    shot = tmp / name
    chromium(tmp, url, f"--screenshot={shot}", f"--window-size={size}")
    assert shot.stat().st_size > 10_000  # a blank page is ~5 KB
    if UPDATE_DOCS:
        shutil.copyfile(shot, DOCS / name)


TOKEN = "dashboard-token-for-tests"

CLIENT = """
import sys
import telemetry_rollup as tr

endpoint, version, builds, failures, lints = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
tr.configure("acme", endpoint=endpoint, app_version=version)
for i in range(builds):
    try:
        with tr.timed("build"):
            if i < failures:
                raise ValueError("no")
    except ValueError:
        pass
tr.count("lint", lints)
"""

#: Per machine: app version, builds, of which failed, lints.
MACHINES = [("2.0.0", 5, 1, 2), ("2.0.0", 3, 0, 4), ("2.1.0", 2, 1, 1)]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,MediaRouter",
    "--no-pings",
    "--hide-scrollbars",
    # A safety net: any host but 127.0.0.1 fails to resolve, so nothing can leave even by mistake.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium(tmp: Path, url: str, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Run Chromium once on ``url``: (stdout, the page's requests from the net log)."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    net_log = profile.with_suffix(".netlog.json")
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={net_log}", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, page_requests(net_log)


def page_requests(net_log: Path) -> list[dict[str, Any]]:
    """Every URL request a page made (main frame, subresources), from Chromium's net log.

    Chromium's own background services (update checks, network time, account probes) run
    without a page: their requests have request type "other" and no 127.0.0.1 isolation key,
    and the host resolver rules above make them fail locally; they are not the page's."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    out = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start or "url" not in params:
            continue
        key = params.get("network_isolation_key", "")
        if params.get("request_type") != "other" or "127.0.0.1" in key or params["url"].startswith("file:"):
            out.append(params)
    return out


def values(dom: str, chart: str, section: str = "") -> dict[str, str]:
    """label -> printed value of every bar of one chart in the DOM Chromium built."""
    if section:
        dom = dom.split(f'data-app="{section}"', 1)[1]
    figure = dom.split(f'data-chart="{chart}"', 1)[1].split("</figure>", 1)[0]
    bars = re.findall(r'<g class="bar" data-label="([^"]*)".*?<text class="value"[^>]*>([^<]*)</text>', figure)
    return dict(bars)


def external_urls(text: str, allowed: str) -> set[str]:
    return {u for u in re.findall(r"https?://[^\s\"'<>,)]+", text) if not u.startswith(allowed)}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def earlier(home: Path, days_ago: int, counts: dict[str, int]) -> None:
    """Counts of an earlier day, as the library's own buffer lines (so there is history to show)."""
    from datetime import datetime, timedelta, timezone

    from telemetry_rollup._codec import encode_line_fast

    day = (datetime.now(timezone.utc).date() - timedelta(days=days_ago)).isoformat()
    with open(home / "acme" / "buffer.jsonl", "ab") as f:
        for name, n in counts.items():
            f.write(encode_line_fast(day, name, n))


def test_dashboard_in_chromium(tmp_path: Path) -> None:
    config = {"limits": {"per_machine": 1000, "per_address": 1000}, "dashboard": {"token": TOKEN}}
    server = Server(f"sqlite:///{tmp_path / 'dash.db'}", tmp_path, config=config)
    try:
        client = tmp_path / "client.py"
        client.write_text(CLIENT)
        endpoint = server.url + "/v1/rollups"
        for i, (version, builds, failures, lints) in enumerate(MACHINES):
            env = {**os.environ, "TELEMETRY_ROLLUP_HOME": str(tmp_path / f"machine-{i}"), "ACME_TELEMETRY": "on"}
            run([str(client), endpoint, version, str(builds), str(failures), str(lints)], env)
            earlier(tmp_path / f"machine-{i}", 2, {"build": 2 * (i + 1)})  # 2 + 4 + 6 = 12
            earlier(tmp_path / f"machine-{i}", 1, {"build": 4 + i, "lint": 3})  # 15 builds, 9 lints
            flushed = run(["-m", "telemetry_rollup", "flush", "--include-today"], env)
            assert "sent 3," in flushed.stdout, flushed.stdout
        url = f"{server.url}/dashboard?app=acme&days=5&token={TOKEN}"
        dom, requests = chromium(tmp_path, url, "--dump-dom")
        assert values(dom, "totals", "acme") == {"build": "37", "lint": "16", "_run:script": "3"}
        assert list(values(dom, "machines").values()) == ["0", "0", "3", "3", "3"]
        assert list(values(dom, "counts:build").values()) == ["0", "0", "12", "15", "10"]
        assert list(values(dom, "counts:lint").values()) == ["0", "0", "0", "9", "7"]
        assert values(dom, "by:app_version") == {"2.0.0": "6", "2.1.0": "3"}  # machine-days: 3 days each
        assert values(dom, "error_rate") == {"build": "20%"}  # 2 of 10 builds raised
        assert values(dom, "codes:build") == {"ValueError": "2"}
        assert values(dom, "durations:build")["lt10ms"] == "10"
        assert "nothing in this range" in dom.split('data-chart="refusals"')[1].split("</figure>")[0]
        # Nothing leaves 127.0.0.1: the page names no other host and asked for nothing else.
        assert external_urls(dom, "http://127.0.0.1:") == set()
        assert [r["url"] for r in requests if r.get("request_type") == "main frame"] == [url]
        assert all(r["url"].startswith(server.url + "/") for r in requests), requests
        # Without the token the browser gets the 401, not the page.
        denied, _ = chromium(tmp_path, f"{server.url}/dashboard?app=acme", "--dump-dom")
        assert 'data-chart="totals"' not in denied and "dashboard credentials required" in denied
        screenshot(tmp_path, url, "dashboard.png", "1000,1500")
    finally:
        server.stop()


def test_view_in_chromium(home: Path, tmp_path: Path) -> None:
    server = Server(f"sqlite:///{tmp_path / 'view.db'}", tmp_path, config={"limits": {"per_machine": 1000}})
    try:
        env = {**os.environ, "ACME_TELEMETRY": "on"}
        client = tmp_path / "client.py"
        client.write_text(CLIENT)
        endpoint = server.url + "/v1/rollups"
        run([str(client), endpoint, "2.0.0", "1", "0", "1"], env)
        earlier(home, 3, {"build": 6, "lint": 2})
        earlier(home, 2, {"build": 9})
        sent = run(["-m", "telemetry_rollup", "flush"], env)  # the two earlier days; today stays
        assert "sent 2" in sent.stdout, sent.stdout
        run([str(client), endpoint, "2.0.0", "4", "1", "6"], env)
        # After the client: with a closed day pending, its exit hook would start a sender.
        earlier(home, 1, {"build": 4, "lint": 1})
        page = tmp_path / "view.html"
        run(["-m", "telemetry_rollup", "view", "--no-open", "--out", str(page)], env)
    finally:
        server.stop()
    dom, requests = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert 'data-mode="on"' in dom
    pending = list(values(dom, "pending_days").values())
    # yesterday 4 + 1; today: 5 builds, 7 lints, build:error and build:error:ValueError 1 each,
    # 4 build:ok, 5 build:dur:lt10ms, 2 _run:script
    assert pending == ["5", "25"], pending
    assert values(dom, "next_counts") == {"build": "4", "lint": "1"}  # only the closed day is due
    assert list(values(dom, "history").values()) == ["17"]  # one request: 6 + 2 + 9
    assert '"build": 4' in dom  # the exact payload
    assert external_urls(dom, server.url + "/") == set()  # only the endpoint, printed as text
    assert all(r["url"].startswith("file:") for r in requests), requests
    screenshot(tmp_path, page.as_uri(), "view.png", "1000,1500")
