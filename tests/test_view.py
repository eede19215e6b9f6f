"""``python -m telemetry_rollup view``: what each chart is fed (pure), and the page a real
process writes from what real client processes recorded (nothing is sent)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from telemetry_rollup._view import AppView, charts, next_counts

CLIENT = """
import sys
import time
import telemetry_rollup as tr
tr.configure("acme", endpoint="http://127.0.0.1:9/v1/rollups", app_version="2.0.0")
tr.count("build", int(sys.argv[1]))
tr.count("lint")
"""


def body(day: str, counts: dict[str, int]) -> bytes:
    return json.dumps({"schema": 1, "app": "acme", "reports": [{"id": "x", "day": day, "counts": counts}]}).encode()


def test_what_each_chart_is_fed() -> None:
    status = {"pending": {"days": [{"day": "2026-11-20", "counts": 12}, {"day": "2026-11-21", "counts": 5}]}}
    bodies = [
        ("reports", "http://127.0.0.1:9/v1/rollups", body("2026-11-20", {"build": 10, "lint": 2})),
        ("reports", "http://127.0.0.1:9/v1/rollups", body("2026-11-21", {"build": 5})),
        ("deletion request for an old machine id", "http://127.0.0.1:9/v1/rollups", b'{"forget": true}'),
    ]
    history = [{"at": 1763683200.0, "result": "sent", "status": 200, "reports": 1, "days": ["2026-11-19"], "counts": 8}]
    view = AppView(status, bodies, [], history)
    assert next_counts(bodies) == {"build": 15, "lint": 2}
    fed = {c.id: c.items for c in charts(view)}
    assert fed["pending_days"] == (("2026-11-20", 12), ("2026-11-21", 5))
    assert fed["next_counts"] == (("build", 15), ("lint", 2))
    assert fed["history"] == (("2025-11-21 00:00 sent", 8),)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_view_writes_the_page(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ACME_TELEMETRY": "local"}  # local: counted here, never sent
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    for n in (3, 4):
        r = run(str(client), str(n), env=env)
        assert r.returncode == 0 and r.stdout == r.stderr == "", r
    out = tmp_path / "view.html"
    r = run("-m", "telemetry_rollup", "view", "--no-open", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{out}\n"
    html = out.read_text()
    assert "<script" not in html
    # The only URL is the endpoint, printed as text.
    assert set(re.findall(r"https?://[^\s\"<,]+", html)) == {"http://127.0.0.1:9/v1/rollups"}
    assert 'data-mode="local"' in html and "ACME_TELEMETRY=&quot;local&quot; is set in this environment" in html
    # 3 + 4 builds, 2 lints, 2 _run:script: counted while local, so kept here only and never sent
    assert re.findall(r'<p class="local-only" data-value="(\d+)"', html) == ["11"]
    assert "nothing sent yet" in html
    assert "mode is local (ACME_TELEMETRY): this is what would be sent; nothing is" in html
    # Without --out: a new temp file, its path printed.
    r = run("-m", "telemetry_rollup", "view", "--no-open", "--app", "acme", env=env)
    path = Path(r.stdout.strip())
    assert r.returncode == 0 and path.is_file() and path.suffix == ".html"
    path.unlink()
    # An app that recorded nothing: the page says so.
    r = run("-m", "telemetry_rollup", "view", "--no-open", "--app", "nothing", "--out", str(out), env=env)
    assert r.returncode == 0
    assert "nothing has recorded nothing on this machine" in out.read_text()


def test_view_opens_the_browser_the_environment_names(home: Path, tmp_path: Path) -> None:
    """``webbrowser`` honours $BROWSER: here a script that records the URL it was given."""
    env = {**os.environ, "ACME_TELEMETRY": "local"}
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    assert run(str(client), "1", env=env).returncode == 0
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env["BROWSER"] = f"{sys.executable} {browser} %s"
    out = tmp_path / "page.html"
    r = run("-m", "telemetry_rollup", "view", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{out} (opened in your browser)\n"
    deadline = time.monotonic() + 20
    while not opened.exists() and time.monotonic() < deadline:  # webbrowser may not wait for it
        time.sleep(0.05)
    assert opened.read_text() == out.as_uri()


def test_the_page_shows_format_characters_escaped(home: Path, tmp_path: Path) -> None:
    """A bidi override in a value read from disk (a hand-edited config.json's app_version, which
    the page shows in the next request's body) must not reorder what the page shows."""
    env = {**os.environ, "ACME_TELEMETRY": "on"}  # on: the page shows the next request's body (port 9: never sent)
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    assert run(str(client), "2", env=env).returncode == 0
    from sender_setup import add_lines, day

    from telemetry_rollup._store import AppStore

    add_lines(AppStore(home / "acme"), {(day(-1), "build"): 1})  # a closed day: a body in the next send
    config = home / "acme" / "config.json"
    obj = json.loads(config.read_text())
    obj["app_version"] = "2.0\u202egnp.exe\u2066"
    config.write_text(json.dumps(obj))
    out = tmp_path / "view.html"
    r = run("-m", "telemetry_rollup", "view", "--no-open", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "\u202e" not in html and "\u2066" not in html
    assert "2.0\\u202egnp.exe\\u2066" in html
