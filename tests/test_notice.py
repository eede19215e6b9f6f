"""The notice (told first, sent later), debug mode, and a host program's stdout left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import Receiver, clean_env, day, listing, plant, run_cli, run_host

NOTICE_START = "acme collects anonymous usage counts"

HOST = """
import sys, telemetry_rollup as tr
t = tr.configure("acme", endpoint=sys.argv[1], send_interval=0, flush_interval=0, **eval(sys.argv[3]))
tr.count("build")
print("host output")
if sys.argv[2] == "send":
    # The host's budget for the whole send. These tests are about consent and the notice, not speed:
    # with 5 s a loaded machine ran out before the receiver's answer came back (the report was kept,
    # as it should be, and "sent 0" failed the test). The bound itself is tested in test_delivery.py
    # against servers that never answer.
    r = t.send(timeout=60)
    print("sent", r.sent)
"""


def host(home: Path, url: str, action: str = "exit", options: str = "{}", **env: str) -> tuple[str, str]:
    res = run_host(
        home,
        HOST.replace("sys.argv[1]", repr(url))
        .replace("sys.argv[2]", repr(action))
        .replace("sys.argv[3]", repr(options)),
        **env,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout, res.stderr


@pytest.fixture
def receiver() -> Receiver:
    with Receiver() as r:
        yield r  # type: ignore[misc]


def test_notice_once_and_nothing_sent_in_that_run(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    # counts of a completed day are waiting: any send would carry them
    plant(home, "acme", {(day(-1), "early"): 4}, endpoint=receiver.url)
    out, err = host(home, receiver.url, "send")
    assert out == "host output\nsent 0\n"
    assert err.count(NOTICE_START) == 1 and len(err.strip().splitlines()) == 1
    assert "ACME_TELEMETRY=0" in err and "DO_NOT_TRACK=1" in err and "off --app acme" in err
    time.sleep(2.0)  # room for a detached sender, were one started: none may be
    assert receiver.bodies == []
    # the second run: no notice, and now it sends (what both runs counted on completed days)
    out, err = host(home, receiver.url, "send")
    assert err == "" and out == "host output\nsent 1\n"
    (body,) = receiver.json_bodies()
    assert body["reports"][0]["counts"] == {"early": 4}
    # a third run: still no notice
    assert host(home, receiver.url)[1] == ""


def test_no_detached_sender_in_the_run_that_told(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    plant(home, "acme", {(day(-1), "early"): 4}, endpoint=receiver.url)
    _, err = host(home, receiver.url, "exit")  # exit hook only: it would spawn a sender if due
    assert NOTICE_START in err
    time.sleep(2.5)
    assert receiver.bodies == []
    _, err = host(home, receiver.url, "exit")  # a later run's exit hook sends in the background
    assert err == ""
    assert receiver.wait_for(1)
    assert receiver.json_bodies()[0]["reports"][0]["counts"] == {"early": 4}


def test_explicit_on_is_consent(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    plant(home, "acme", {(day(-1), "early"): 4}, endpoint=receiver.url)
    assert run_cli(home, "on", "--app", "acme").returncode == 0
    out, err = host(home, receiver.url, "send")
    assert err == "" and out == "host output\nsent 1\n"
    assert not (home / "acme" / "notice").exists()
    assert len(receiver.bodies) == 1


def test_no_notice_for_local_or_an_env_choice(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _, err = host(home, receiver.url, options="{'default': 'local'}")
    assert err == ""
    _, err = host(tmp_path / "h2", receiver.url, ACME_TELEMETRY="1")
    assert err == ""


def test_the_app_may_bring_its_own_notice(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _, err = host(home, receiver.url, options="{'notice': 'Acme counts commands.\\nSee the docs.'}")
    assert err == "Acme counts commands. See the docs.\n"
    _, err = host(tmp_path / "h2", receiver.url, options="{'notice_url': 'https://acme.example/t'}")
    assert err.startswith(NOTICE_START) and "Details: https://acme.example/t" in err


def test_environment_opt_out_creates_and_sends_nothing(tmp_path: Path, receiver: Receiver) -> None:
    for env in ({"DO_NOT_TRACK": "1"}, {"ACME_TELEMETRY": "0"}):
        home = tmp_path / next(iter(env))
        out, err = host(home, receiver.url, "send", **env)
        assert out == "host output\nsent 0\n" and err == ""
        assert not home.exists()
    # with data already there, neither the host nor flush sends
    home = tmp_path / "data"
    plant(home, "acme", {(day(-1), "early"): 4}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    host(home, receiver.url, "send", DO_NOT_TRACK="1")
    res = run_cli(home, "flush", DO_NOT_TRACK="1")
    assert res.returncode == 0 and "off (DO_NOT_TRACK)" in res.stdout
    res = run_cli(home, "flush", "--app", "acme", ACME_TELEMETRY="off")
    assert res.returncode == 0
    time.sleep(1.0)
    assert receiver.bodies == []


HOST_QUIET = """
import telemetry_rollup as tr
t = tr.configure("acme", endpoint=%r, send_interval=0)
for i in range(1000):
    tr.count("build")
    tr.count("not a valid name")
print("only this")
t.send(timeout=5, include_today=True)
tr.status()
tr.flush()
"""


@pytest.mark.parametrize("debug", ["", "1"])
def test_the_library_writes_no_byte_to_stdout(tmp_path: Path, receiver: Receiver, debug: str) -> None:
    home = tmp_path / "home"
    (home / "acme").mkdir(parents=True)
    (home / "acme" / "notice").write_text("0")  # told before: this run may send
    res = run_host(home, HOST_QUIET % receiver.url, TELEMETRY_ROLLUP_DEBUG=debug)
    assert res.returncode == 0
    assert res.stdout == "only this\n"
    assert len(receiver.bodies) == 1
    if debug:
        from telemetry_rollup._identity import redact

        body = receiver.bodies[0]
        assert f"POST {receiver.url} {redact(body).decode()}" in res.stderr  # the key redacted
        assert json.loads(body)["machine_key"] not in res.stderr
        assert "-> HTTP 200 (sent)" in res.stderr
    else:
        assert res.stderr == ""  # silent without debug


def test_debug_logs_rejections_and_internal_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Receiver(status=400) as rec:
        plant(home, "acme", {(day(-1), "early"): 4}, endpoint=rec.url)
        (home / "acme" / "notice").write_text("0")
        res = run_cli(home, "flush", "--app", "acme", TELEMETRY_ROLLUP_DEBUG="1")
        assert "-> HTTP 400 (rejected)" in res.stderr and '"early":4' in res.stderr
        assert len(rec.bodies) == 1
    # an internal error in the host (the data root is a file) is logged in debug mode, and only then
    blocker = tmp_path / "file"
    blocker.write_text("x")
    script = "import telemetry_rollup as tr\ntr.configure('acme')\ntr.count('x')\ntr.flush()\nprint('ok')"
    quiet = run_host(home, script, TELEMETRY_ROLLUP_HOME=str(blocker))
    assert quiet.stdout == "ok\n" and quiet.stderr == ""
    loud = run_host(home, script, TELEMETRY_ROLLUP_HOME=str(blocker), TELEMETRY_ROLLUP_DEBUG="1")
    assert loud.stdout == "ok\n" and "persist failed" in loud.stderr
    assert "Traceback" not in loud.stderr
    assert listing(blocker) == set() and json.dumps(blocker.read_text()) == '"x"'


def test_public_status_is_the_json_status_of_the_app(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = (
        "import json, telemetry_rollup as tr\n"
        "print(json.dumps(tr.status()))\n"
        "tr.configure('acme', default='local')\ntr.count('build', 3)\ntr.flush()\n"
        "print(json.dumps(tr.status()))\n"
    )
    res = run_host(home, script)
    assert res.returncode == 0 and res.stderr == ""
    before, after = (json.loads(line) for line in res.stdout.splitlines())
    assert before == {}
    assert (after["app"], after["mode"], after["source"]) == ("acme", "local", "default")
    assert after["pending"]["days"][0]["counts"] == after["pending"]["counts"] == 4  # build x3, _run:script
    assert after["buffer"]["bytes"] == (home / "acme" / "buffer.jsonl").stat().st_size


# -- the notice reaches the person, not a stream the host redirected (issue 12, item 3) -------------
REDIRECTING = """
import contextlib, io, os, sys, time, telemetry_rollup as tr
tr.configure("acme", endpoint=%(url)r, flush_interval=%(interval)s)
captured = io.StringIO()
with contextlib.redirect_stderr(captured):   # the host's own capture, as click's CliRunner does
    tr.count("build")
    %(action)s
print("captured:", repr(captured.getvalue()))
"""


@pytest.mark.parametrize(
    "interval,action",
    [
        ("0", "tr.flush()"),  # the host's thread persists first
        ("0.1", "time.sleep(0.6)"),  # the background flusher persists first
    ],
)
def test_notice_goes_to_the_real_stderr_not_a_redirected_one(
    tmp_path: Path, receiver: Receiver, interval: str, action: str
) -> None:
    home = tmp_path / "home"
    res = run_host(home, REDIRECTING % {"url": receiver.url, "interval": interval, "action": action})
    assert res.returncode == 0, res.stderr
    assert res.stdout == "captured: ''\n"  # nothing of ours in the host's capture
    assert res.stderr.count(NOTICE_START) == 1  # the person saw it, on file descriptor 2
    assert (home / "acme" / "notice").exists()


def _host_without_stderr(home: Path, url: str, how: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import os, sys, telemetry_rollup as tr\n"
        + ("os.close(2)\n" if how == "closed-later" else "")
        + f"tr.configure('acme', endpoint={url!r}, flush_interval=0)\n"
        + "tr.count('build')\n"
        + "tr.flush()\n"
        + "print('host ok')\n"
    )
    with open(os.devnull, "rb") as read_only:
        return subprocess.run(
            [sys.executable, "-c", script],
            env=clean_env(home),
            stdout=subprocess.PIPE,
            stderr=read_only if how == "read-only" else None,
            preexec_fn=(lambda: os.close(2)) if how == "closed-at-start" else None,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.mark.parametrize("how", ["closed-at-start", "closed-later", "read-only"])
def test_no_writable_stderr_means_not_shown_and_nothing_sent(tmp_path: Path, receiver: Receiver, how: str) -> None:
    home = tmp_path / "home"
    plant(home, "acme", {(day(-1), "early"): 4}, endpoint=receiver.url)
    res = _host_without_stderr(home, receiver.url, how)
    assert res.returncode == 0 and res.stdout == "host ok\n"
    assert not (home / "acme" / "notice").exists()  # not shown, so not recorded as shown
    for name in ("buffer.jsonl", "buffer.jsonl.lock"):  # not written into a file that took fd 2
        p = home / "acme" / name
        assert not p.exists() or NOTICE_START.encode() not in p.read_bytes()
    time.sleep(1.5)
    assert receiver.bodies == []  # nothing is sent before the person could have read the notice
    # the next run with a real stderr shows it, and sends nothing in that run either
    _, err = host(home, receiver.url, "send")
    assert NOTICE_START in err and receiver.bodies == []
