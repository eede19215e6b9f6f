"""Hostile data directories (issue 12, item 7): planted links at lock paths and the outbox, data
directories others can write to, hard links, and a relative data root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import clean_env, run_cli
from receiver import Receiver
from sender_setup import add_lines, day, make_app

HOST = """
import os, sys, telemetry_rollup as tr
tr.configure("acme", endpoint=os.environ.get("TEST_ENDPOINT"), flush_interval=0)
tr.count("build", 3)
print("host ok")
"""


def host(home: Path, code: str = HOST, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(home, ACME_TELEMETRY="on", **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_filelock_is_required_where_it_no_longer_follows_planted_links() -> None:
    """CVE-2025-68146: filelock < 3.20.1 follows a symlink planted at a lock path and truncates or
    chmods its target."""
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"filelock>=3.20.1"' in text
    from importlib.metadata import version

    major, minor, patch = (int(x) for x in version("filelock").split(".")[:3])
    assert (major, minor, patch) >= (3, 20, 1)


def _plant_link(link: Path, target: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    return victim


@pytest.mark.parametrize("target", ["sender.lock", "buffer.jsonl.lock", "outbox"])
def test_a_planted_symlink_never_breaks_flush_show_or_off(
    home: Path, tmp_path: Path, receiver: Receiver, target: str
) -> None:
    victim = _victim(tmp_path)
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "kept"): 3})
    (home / "acme" / "notice").write_text("0")
    link = home / "acme" / target
    _plant_link(link, victim if target == "outbox" else victim / "precious")
    assert host(home, TEST_ENDPOINT=receiver.url).stdout == "host ok\n"

    show = run_cli(home, "show", "--app", "acme", "--raw")
    assert show.returncode == 0, show.stderr
    flush = run_cli(home, "flush", "--app", "acme", "--include-today")
    assert flush.returncode == 0, flush.stderr + flush.stdout
    assert receiver.totals() == {"kept": 3, "build": 3, "_run:script": 1}

    _plant_link(link, victim if target == "outbox" else victim / "precious")  # again, for off
    off = run_cli(home, "off", "--app", "acme", "--keep-remote")
    assert off.returncode == 0, off.stderr
    assert sorted(p.name for p in (home / "acme").iterdir()) == ["mode.json"]  # everything else went
    assert sorted(p.name for p in victim.iterdir()) == ["precious"]  # through no link
    assert (victim / "precious").read_text() == "keep me"


@pytest.mark.parametrize("target", ["buffer.jsonl", "buffer.jsonl.lock", "sender.lock", "mode.json"])
def test_a_hard_link_is_treated_like_a_planted_symlink(home: Path, tmp_path: Path, target: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text('{"mode": "on"}\n' if target == "mode.json" else "keep me\n")
    before = victim.read_bytes()
    store = make_app(home, endpoint=None, mode="local")
    os.unlink(store.mode_file)
    os.link(victim, home / "acme" / target)
    proc = host(home)
    assert proc.returncode == 0 and proc.stdout == "host ok\n", proc.stderr
    assert victim.read_bytes() == before  # never written through the second link
    if target == "buffer.jsonl":  # the link was removed and a buffer of our own started
        lines = (home / "acme" / "buffer.jsonl").read_text().splitlines()
        assert [json.loads(x)["n"] for x in lines if "build" in x] == ["build"]
    assert run_cli(home, "flush", "--app", "acme").returncode in (0, 1)
    assert victim.read_bytes() == before
    if target == "mode.json":
        # a hard-linked choice is not the user's: the app's default decides (and a notice is due)
        assert json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]["source"] == "default"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
@pytest.mark.parametrize("where", ["root-mode", "app-mode", "root-owner", "app-owner"])
def test_a_data_directory_others_can_write_to_is_not_used(home: Path, where: str) -> None:
    app = home / "acme"
    app.mkdir(parents=True, mode=0o700)
    target = home if where.startswith("root") else app
    if where.endswith("mode"):
        target.chmod(0o777 if where.startswith("root") else 0o770)
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory to another user")
        os.chown(target, 65534, 65534)
    proc = host(home)
    assert proc.returncode == 0 and proc.stdout == "host ok\n" and proc.stderr == ""
    assert sorted(p.name for p in app.iterdir()) == []  # nothing written there
    st = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
    assert st["mode"] == "off" and st["source"] == "unsafe"
    assert ("another user" if where.endswith("owner") else "writable by group or others") in st["unsafe"]
    text = run_cli(home, "status").stdout
    assert "not used" in text and str(target) in text
    # nothing planted there is sent either
    (app / "config.json").write_text(json.dumps({"app": "acme", "endpoint": "http://127.0.0.1:9/x"}))
    flush = run_cli(home, "flush", "--app", "acme", "--include-today")
    assert "unsafe" in flush.stdout


RELATIVE = """
import os, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=0{home})
os.chdir("elsewhere")
tr.count("build", 2)
tr.flush()
tr.count("build", 1)    # and the rest at exit
"""


@pytest.mark.parametrize("how", ["env", "argument"])
def test_a_relative_data_root_is_resolved_once_at_configure(tmp_path: Path, how: str) -> None:
    work = tmp_path / "work"
    (work / "elsewhere").mkdir(parents=True)
    code = RELATIVE.format(home=", home='rel'" if how == "argument" else "")
    env = clean_env(work / "unused")
    if how == "env":
        env["TELEMETRY_ROLLUP_HOME"] = "rel"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=work, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = (work / "rel" / "acme" / "buffer.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["c"] for x in lines if '"build"' in x) == 3
    assert not (work / "elsewhere" / "rel").exists()


def test_the_linux_default_root_is_platformdirs_rule() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the spelled-out rule is Linux's")
    import platformdirs

    from telemetry_rollup import _paths

    for env in ({}, {"XDG_STATE_HOME": "/x/state"}, {"XDG_STATE_HOME": "  "}):
        old = {k: os.environ.get(k) for k in ("XDG_STATE_HOME",)}
        try:
            os.environ.pop("XDG_STATE_HOME", None)
            os.environ.update(env)
            expected = platformdirs.user_state_dir("telemetry-rollup", appauthor=False)
            assert _paths._linux_state_dir(os.environ) == expected
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
