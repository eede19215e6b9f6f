"""The end-user commands, through real subprocesses and in-process ``cli.main``, against real receivers."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import Receiver, clean_env, day, listing, main_inproc, plant, run_cli
from helpers import identity

from telemetry_rollup._identity import REDACTED

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    for k in ("DO_NOT_TRACK", "ACME_TELEMETRY", "BETA_TELEMETRY", "TELEMETRY_ROLLUP_DEBUG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TELEMETRY_ROLLUP_HOME", str(h))
    return h


@pytest.fixture
def receiver() -> Receiver:
    with Receiver() as r:
        yield r  # type: ignore[misc]


def two_apps(home: Path, url: str) -> None:
    plant(home, "acme", {(day(-2), "build"): 10, (day(-1), "build"): 40, (day(-1), "lint"): 2}, endpoint=url)
    plant(home, "beta", {(day(-1), "run"): 7}, endpoint=url)
    (home / "acme" / "notice").write_text("0")


# -- status -----------------------------------------------------------------------------------
def test_status_json_across_two_apps_subprocess(home: Path, receiver: Receiver) -> None:
    two_apps(home, receiver.url)
    assert run_cli(home, "local", "--app", "beta").returncode == 0
    res = run_cli(home, "status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == 1 and doc["data_root"] == str(home)
    apps = {a["app"]: a for a in doc["apps"]}
    assert set(apps) == {"acme", "beta"}
    acme, beta = apps["acme"], apps["beta"]
    assert (acme["mode"], acme["source"], acme["env_var"]) == ("on", "default", "ACME_TELEMETRY")
    assert (beta["mode"], beta["source"], beta["stored"]) == ("local", "stored", "local")
    assert beta["stored_at"] is not None
    assert acme["pending"]["counts"] == 52 and acme["pending"]["reports"] == 0
    assert [(d["day"], d["counts"], d["complete"]) for d in acme["pending"]["days"]] == [
        (day(-2), 10, True),
        (day(-1), 42, True),
    ]
    assert acme["buffer"]["bytes"] == (home / "acme" / "buffer.jsonl").stat().st_size
    assert acme["buffer"]["cap"] == 256 * 1024
    assert acme["machine_id"] is None and acme["last_attempt"] is None
    assert acme["next_attempt"]["at"] is not None
    assert beta["next_attempt"]["at"] is None and "local" in beta["next_attempt"]["why"]
    assert acme["deletion_requests"] == [] and acme["totals"]["reports_sent"] == 0
    assert acme["data_dir"] == str(home / "acme")


def test_status_after_a_send_reports_it(home: Path, receiver: Receiver) -> None:
    two_apps(home, receiver.url)
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    code, out, err = main_inproc("status", "--app", "acme", "--json")
    assert code == 0 and err == ""
    (st,) = json.loads(out)["apps"]
    assert st["totals"]["reports_sent"] == 2 and st["totals"]["counts_sent"] == 52
    assert st["last_attempt"]["result"] == "sent" and st["last_attempt"]["status"] == 200
    assert st["machine_id"] == receiver.json_bodies()[0]["machine_id"]
    assert st["pending"]["counts"] == 0


def test_status_human_text_has_a_bar_per_day(home: Path, receiver: Receiver) -> None:
    two_apps(home, receiver.url)
    code, out, err = main_inproc("status")
    assert code == 0 and err == ""
    assert out.startswith("acme: on (the app's default; you have not chosen)")
    assert "beta: on" in out
    lines = [line for line in out.splitlines() if line.strip().startswith(day(-1))]
    assert len(lines) == 2  # one per app
    assert "█" * 20 in lines[0] and "42" in lines[0]  # acme's largest day: a full bar
    short = next(line for line in out.splitlines() if line.strip().startswith(day(-2)))
    assert "█" in short and "█" * 20 not in short  # 10 of 42: a shorter bar
    assert f"data directory     {home / 'acme'}" in out


def test_status_with_no_data(home: Path) -> None:
    res = run_cli(home, "status")
    assert res.returncode == 0 and "No app has recorded anything" in res.stdout
    assert not home.exists()  # status creates nothing


# -- on / off / local -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["on", "local", "off"])
def test_mode_is_stored_with_its_date(home: Path, mode: str) -> None:
    res = run_cli(home, mode, "--app", "acme")
    assert res.returncode == 0, res.stderr
    obj = json.loads((home / "acme" / "mode.json").read_text())
    assert obj["mode"] == mode and obj["at"].startswith(day(0))
    assert f"acme: telemetry is {mode}" in res.stdout
    assert "note:" not in res.stdout


def test_env_override_is_announced(home: Path) -> None:
    res = run_cli(home, "on", "--app", "acme", DO_NOT_TRACK="1")
    assert res.returncode == 0
    assert "DO_NOT_TRACK is set in this environment and overrides the stored choice" in res.stdout
    res = run_cli(home, "off", "--app", "acme", ACME_TELEMETRY="1")
    assert "ACME_TELEMETRY is set" in res.stdout and "acme is on here" in res.stdout
    res = run_cli(home, "local", "--app", "acme", ACME_TELEMETRY="local")
    assert "note:" not in res.stdout  # same mode: nothing overridden


def test_off_deletes_everything_and_asks_to_forget(home: Path, receiver: Receiver) -> None:
    two_apps(home, receiver.url)
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    mid, key = identity(home / "acme")
    plant(home, "acme", {(day(0), "build"): 3}, endpoint=receiver.url)  # more data, not yet sent
    res = run_cli(home, "off", "--app", "acme")
    assert res.returncode == 0, res.stderr
    assert listing(home / "acme") == {"mode.json"}
    for name in ("buffer.jsonl", "outbox", "machine_key", "state.json", "config.json", "notice"):
        assert name in res.stdout
    assert "deletion request for the old machine id: acknowledged" in res.stdout
    forget = {"schema": 2, "app": "acme", "machine_id": mid, "machine_key": key, "forget": True}
    assert receiver.bodies[-1] == json.dumps(forget, separators=(",", ":")).encode()
    assert key not in res.stdout + res.stderr
    n = len(receiver.bodies)
    # nothing is ever sent again while off; the other app is untouched
    assert run_cli(home, "flush").returncode == 0
    assert all(b["app"] == "beta" for b in receiver.json_bodies()[n:])
    assert listing(home / "acme") == {"mode.json"}
    assert (home / "beta" / "buffer.jsonl").exists() or (home / "beta" / "outbox").exists()


def test_on_after_off_makes_a_new_machine_id(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 1}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    old = receiver.json_bodies()[0]["machine_id"]
    assert run_cli(home, "off", "--app", "acme").returncode == 0
    res = run_cli(home, "on", "--app", "acme")
    assert "a new random machine id will be made at the next send" in res.stdout
    plant(home, "acme", {(day(-1), "build"): 2}, endpoint=receiver.url)
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    last = receiver.json_bodies()[-1]
    assert last["reports"][0]["counts"] == {"build": 2}
    assert last["machine_id"] != old


def test_off_keep_remote_sends_nothing(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 1}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    n = len(receiver.bodies)
    code, out, err = main_inproc("off", "--app", "acme", "--keep-remote")
    assert code == 0 and err == ""
    assert "skipped (--keep-remote)" in out
    assert len(receiver.bodies) == n
    assert listing(home / "acme") == {"mode.json"}


def test_off_without_a_machine_id_sends_nothing(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 1}, endpoint=receiver.url)
    code, out, _ = main_inproc("off", "--app", "acme")
    assert code == 0 and "deletion request" not in out
    assert receiver.bodies == []


def test_off_all(home: Path, receiver: Receiver) -> None:
    two_apps(home, receiver.url)
    res = run_cli(home, "off", "--all")
    assert res.returncode == 0, res.stderr
    assert listing(home / "acme") == {"mode.json"} and listing(home / "beta") == {"mode.json"}
    assert "acme: telemetry is off" in res.stdout and "beta: telemetry is off" in res.stdout
    assert run_cli(home, "off", "--all", "--app", "acme").returncode == 2


HOST_LOOP = """
import sys, time, telemetry_rollup as tr
tr.configure("acme", endpoint=None, flush_interval=0.05)
open(sys.argv[1], "w").close()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    tr.count("tick")
    tr.flush()
    time.sleep(0.01)
print("done")
"""


def test_off_with_a_running_process_recreates_nothing(home: Path, tmp_path: Path) -> None:
    (home / "acme").mkdir(parents=True)
    (home / "acme" / "notice").write_text("0")
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST_LOOP, str(started), "4"],
        env=clean_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (home / "acme" / "buffer.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (home / "acme" / "buffer.jsonl").exists()
        res = run_cli(home, "off", "--app", "acme")
        assert res.returncode == 0, res.stderr
        assert "buffer.jsonl" in res.stdout
        assert proc.poll() is None  # still counting
        time.sleep(1.0)
        assert listing(home / "acme") == {"mode.json"}
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "done\n" and err == ""
    assert listing(home / "acme") == {"mode.json"}  # the exit hook wrote nothing either


# -- show ---------------------------------------------------------------------------------------
def test_show_is_exactly_what_the_receiver_then_gets(home: Path, receiver: Receiver) -> None:
    counts = {(day(-d), f"cmd{i}"): d * 10 + i for d in range(1, 4) for i in range(3)}
    plant(home, "acme", counts, endpoint=receiver.url, app_version="1.4.0")
    (home / "acme" / "notice").write_text("0")
    assert run_cli(home, "reset-id", "--app", "acme").returncode == 0
    raw = run_cli(home, "show", "--app", "acme", "--raw")
    assert raw.returncode == 0, raw.stderr
    pretty = run_cli(home, "show", "--app", "acme")
    assert pretty.returncode == 0
    assert receiver.bodies == []  # show sends nothing
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    assert receiver.bodies
    # The same bytes, but for the machine key: sent as the proof, shown redacted (same length).
    _, key = identity(home / "acme")
    sent = b"".join(b + b"\n" for b in receiver.bodies)
    assert key.encode() in sent and key not in raw.stdout + raw.stderr + pretty.stdout
    # show makes no report (it changes nothing): a report the send makes gets its random id then.
    assert _ids_blank(raw.stdout.encode()) == _ids_blank(sent.replace(key.encode(), REDACTED.encode()))
    assert "machine_key" in raw.stderr and "never shown" in raw.stderr
    blocks = [json.loads(_ids_blank(part.encode())) for part in _json_blocks(pretty.stdout)]
    assert blocks == [{**json.loads(_ids_blank(b)), "machine_key": REDACTED} for b in receiver.bodies]
    got = {(r["day"], k): v for b in receiver.json_bodies() for r in b["reports"] for k, v in r["counts"].items()}
    assert got == counts


def _ids_blank(body: bytes) -> bytes:
    return re.sub(rb'"id": ?"[0-9a-f-]{36}"', b'"id":"-"', body)


def test_show_prints_the_very_bytes_of_reports_already_made(home: Path) -> None:
    """Reports the last send kept (its server did not answer) are shown byte for byte, ids included."""
    with Receiver(status=503) as down:
        plant(home, "acme", {(day(-1), "build"): 3}, endpoint=down.url)
        (home / "acme" / "notice").write_text("0")
        assert run_cli(home, "flush", "--app", "acme").returncode == 1
        raw = run_cli(home, "show", "--app", "acme", "--raw")
        _, key = identity(home / "acme")
        assert raw.stdout.encode() == down.bodies[0].replace(key.encode(), REDACTED.encode()) + b"\n"


def _json_blocks(text: str) -> list[str]:
    blocks, cur = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            if cur:
                blocks.append("\n".join(cur))
                cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def test_show_in_process_creates_no_machine_id_and_says_so(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 5}, endpoint=receiver.url)
    code, out, err = main_inproc("show", "--app", "acme")
    assert code == 0 and err == ""
    assert '"build": 5' in out and "no machine id exists yet" in out
    assert "nothing is sent before the notice has been shown once" in out
    assert not (home / "acme" / "machine_key").exists()
    code, out, err = main_inproc("show", "--app", "acme", "--raw")
    assert json.loads(out)["reports"][0]["counts"] == {"build": 5}  # only the body on stdout
    assert "no machine id exists yet" in err and "machine_key" in err
    assert receiver.bodies == []


def test_show_in_local_mode(home: Path) -> None:
    plant(home, "acme", {(day(-1), "build"): 5, (day(0), "build"): 1}, endpoint=None)
    assert main_inproc("local", "--app", "acme")[0] == 0
    code, out, _ = main_inproc("show", "--app", "acme")
    assert code == 0 and '"build": 5' in out and "mode is local" in out
    code, out, _ = main_inproc("show", "--app", "acme", "--include-today")
    assert '"build": 1' in out


def test_show_under_an_environment_opt_out_touches_nothing(home: Path) -> None:
    plant(home, "acme", {(day(-1), "build"): 5})
    before = listing(home / "acme")
    res = run_cli(home, "show", "--app", "acme", ACME_TELEMETRY="0")
    assert res.returncode == 0 and "ACME_TELEMETRY is set" in res.stdout
    assert listing(home / "acme") == before


# -- reset-id -----------------------------------------------------------------------------------
def test_reset_id(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 5}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    code, out, _ = main_inproc("reset-id", "--app", "acme")
    first, first_key = identity(home / "acme")
    assert code == 0 and first in out and first_key not in out
    res = run_cli(home, "reset-id", "--app", "acme")
    second, second_key = identity(home / "acme")
    assert res.returncode == 0 and second != first and f"{first} -> {second}" in res.stdout
    assert second_key not in res.stdout
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    forget, report = receiver.json_bodies()  # the old id's deletion request (reset-id), the report
    assert forget == {"schema": 2, "app": "acme", "machine_id": first, "machine_key": first_key, "forget": True}
    assert report["machine_id"] == second
    assert main_inproc("off", "--app", "acme")[0] == 0
    code, _, err = main_inproc("reset-id", "--app", "acme")
    assert code == 1 and "off" in err and not (home / "acme" / "machine_key").exists()


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["bogus"], ["on"], ["local"], ["off"], ["reset-id"], ["on", "--app", "Bad Name"], ["status", "--nope"], []],
)
def test_usage_errors_are_one_line_and_exit_2(home: Path, args: list[str]) -> None:
    res = run_cli(home, *args)
    assert res.returncode == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    code, out, err = main_inproc(*args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_internal_error_is_one_line(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_cli(home, "on", "--app", "acme", TELEMETRY_ROLLUP_HOME=str(blocker))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_help_goes_to_the_given_stream(home: Path) -> None:
    code, out, err = main_inproc("--help")
    assert code == 0 and "status" in out and err == ""


# -- the host's own command ----------------------------------------------------------------------
def test_main_with_app_implies_app(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 5}, endpoint=receiver.url)
    plant(home, "beta", {(day(-1), "run"): 1}, endpoint=receiver.url)
    code, out, _ = main_inproc("status", "--json", app="acme")
    assert code == 0 and [a["app"] for a in json.loads(out)["apps"]] == ["acme"]
    assert main_inproc("status", "--app", "beta", app="acme")[0] == 2
    assert main_inproc("off", app="acme")[0] == 0
    assert listing(home / "acme") == {"mode.json"} and (home / "beta" / "buffer.jsonl").exists()


def test_add_telemetry_command_to_a_host_parser(home: Path) -> None:
    from telemetry_rollup.cli import add_telemetry_command

    parser = argparse.ArgumentParser(prog="acme")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    add_telemetry_command(sub, app="acme")
    args = parser.parse_args(["telemetry", "local"])
    assert args.command == "telemetry"
    out, err = io.StringIO(), io.StringIO()
    assert args.func(args, out, err) == 0
    assert "acme: telemetry is local" in out.getvalue()
    assert json.loads((home / "acme" / "mode.json").read_text())["mode"] == "local"
    # given the parser itself, the helper finds (or makes) the subparsers
    p2 = argparse.ArgumentParser(prog="tool")
    add_telemetry_command(p2, app="acme")
    a2 = p2.parse_args(["telemetry", "status", "--json"])
    out = io.StringIO()
    assert a2.func(a2, out, io.StringIO()) == 0
    assert json.loads(out.getvalue())["apps"][0]["mode"] == "local"


def test_example_tool(home: Path, receiver: Receiver) -> None:
    example = REPO / "examples" / "acme_cli.py"
    env = clean_env(home, ACME_ENDPOINT=receiver.url)

    def acme(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(example), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    first = acme("build")
    assert first.returncode == 0 and first.stdout == "building...\n"
    assert "acme collects anonymous usage counts" in first.stderr
    res = acme("telemetry", "status", "--json")
    assert res.returncode == 0, res.stderr
    (st,) = json.loads(res.stdout)["apps"]
    # build, and _run:script once per run: counted before the notice was shown, so never sent
    assert st["app"] == "acme" and st["pending"]["counts"] == 0 and st["local_only"]["counts"] == 2
    assert acme("build").returncode == 0  # after the notice: sendable (the next UTC day)
    (st,) = json.loads(acme("telemetry", "status", "--json").stdout)["apps"]
    assert st["pending"]["counts"] == 2 and st["local_only"]["counts"] == 2
    res = acme("telemetry", "off")
    assert res.returncode == 0 and "acme: telemetry is off" in res.stdout
    assert acme("build").stdout == "building...\n"
    assert listing(home / "acme") == {"mode.json"}
    assert acme("telemetry", "bogus").returncode == 2
    assert receiver.bodies == []
