"""Issue 18: what TELEMETRY.md and README promise is what happens. Each test runs the real thing
(subprocesses, a recording receiver on 127.0.0.1, the files on disk) and pins one statement."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import clean_env, day, listing, plant, run_cli
from receiver import Receiver


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` with a hash of its bytes (directories as "dir")."""
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = str(p.relative_to(directory))
        if rel != "sender.lock":  # a lock file is not the pipeline
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- item 1: looking never changes what will be sent or when --------------------------------------
def test_show_view_and_status_are_read_only_on_the_pipeline(home: Path, receiver: Receiver, tmp_path: Path) -> None:
    plant(home, "acme", {(day(-1), "build"): 2, (day(0), "build"): 5}, endpoint=receiver.url)
    (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    assert run_cli(home, "reset-id", "--app", "acme").returncode == 0
    before = _snapshot(home / "acme")
    for args in (
        ("show", "--app", "acme", "--include-today"),
        ("show", "--app", "acme", "--raw", "--include-today"),
        ("show", "--app", "acme"),
        ("status", "--app", "acme"),
        ("status", "--json"),
        ("view", "--app", "acme", "--no-open", "--out", str(tmp_path / "v.html")),
    ):
        res = run_cli(home, *args)
        assert res.returncode == 0, (args, res.stderr)
        after = _snapshot(home / "acme")
        assert after == before, args
    shown = run_cli(home, "show", "--app", "acme", "--raw", "--include-today").stdout
    assert [r["counts"] for b in map(json.loads, shown.splitlines()) for r in b["reports"]] == [
        {"build": 2},
        {"build": 5},
    ]
    assert receiver.bodies == []
    # The next send is what it would have been without looking: yesterday only, today stays open.
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    assert [r["day"] for b in receiver.json_bodies() for r in b["reports"]] == [day(-1)]
    doc = json.loads(run_cli(home, "status", "--json").stdout)
    assert [(d["day"], d["counts"], d["state"]) for d in doc["apps"][0]["pending"]["days"]] == [(day(0), 5, "open")]


# -- item 2: the tool's own telemetry command sends nothing -----------------------------------------
HOST_COUNTING_EVERY_COMMAND = """
import argparse, sys, telemetry_rollup as tr
from telemetry_rollup.cli import add_telemetry_command
tr.configure("acme", endpoint=sys.argv[1], send_interval=60)
parser = argparse.ArgumentParser(prog="acme")
sub = parser.add_subparsers(dest="command", required=True)
sub.add_parser("build").set_defaults(func=lambda a: 0)
add_telemetry_command(sub, app="acme")
args = parser.parse_args(sys.argv[2:])
tr.count(f"command:{args.command}")  # a pre-action hook that counts every command, as codegraph's did
raise SystemExit(args.func(args))
"""


@pytest.mark.parametrize("command", ["status", "show", "view --no-open", "local", "off", "on"])
def test_the_tools_own_telemetry_command_sends_nothing(home: Path, receiver: Receiver, command: str) -> None:
    plant(home, "acme", {(day(-2), "build"): 4}, endpoint=receiver.url, send_interval=60)
    (home / "acme" / "notice").write_text("0")
    (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    env = clean_env(home)
    res = subprocess.run(
        [sys.executable, "-c", HOST_COUNTING_EVERY_COMMAND, receiver.url, "telemetry", *command.split()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert not [p for p in listing(home / "acme") if p.startswith("autosend.")]  # no sender was started
    time.sleep(1.5)
    assert receiver.connections == 0
    # The same host's ordinary command does start the automatic send (the test can fail).
    if command in ("status", "show"):
        res = subprocess.run(
            [sys.executable, "-c", HOST_COUNTING_EVERY_COMMAND, receiver.url, "build"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert receiver.wait_for(1)


# -- item 3: what was counted while local (or before the notice) never leaves ---------------------
def _host(url: str, *lines: str) -> str:
    return "\n".join(
        ["import subprocess, sys, telemetry_rollup as tr", f"tr.configure('acme', endpoint={url!r}, flush_interval=0)"]
        + list(lines)
    )


def _mode(home: Path, mode: str) -> None:
    res = run_cli(home, mode, "--app", "acme")
    assert res.returncode == 0, res.stderr


def test_counts_made_while_local_never_leave_after_a_switch_to_on(home: Path, receiver: Receiver) -> None:
    _mode(home, "local")
    env = clean_env(home)
    run = lambda code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run(_host(receiver.url, "tr.count('while_local', 5)")).returncode == 0
    st = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
    assert st["local_only"]["counts"] == 6  # while_local 5 and the run's _run:script
    assert st["local_only"]["until"] == day(30) and st["pending"]["counts"] == 0
    assert "kept here only" in run_cli(home, "status").stdout
    # A process that was counting while local and sees the user's switch to on only at its next
    # persist: what it counted before is local too; what it counts after that persist is sent.
    switch = [sys.executable, "-m", "telemetry_rollup", "on", "--app", "acme"]
    code = _host(
        receiver.url,
        "tr.count('local_then_on', 7)",
        f"subprocess.run({switch!r}, check=True, capture_output=True)",
        "tr.flush()",
        "tr.count('after_on', 3)",
    )
    res = run(code)
    assert res.returncode == 0, res.stderr
    assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 0
    assert receiver.totals() == {"after_on": 3}
    # The local-only counts are still here (status), and a later flush sends them neither.
    assert json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]["local_only"]["counts"] == 6 + 7 + 1
    assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 0
    assert receiver.totals() == {"after_on": 3}


def test_counts_made_before_the_notice_never_leave(home: Path, receiver: Receiver) -> None:
    env = clean_env(home)
    first = subprocess.run(
        [sys.executable, "-c", _host(receiver.url, "tr.count('before_notice', 2)")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "acme collects" in first.stderr  # the notice, in this run
    (home / "acme" / "notice").write_text("0")  # as if shown long ago: the time rule is item 4's test
    second = subprocess.run(
        [sys.executable, "-c", _host(receiver.url, "tr.count('after_notice', 4)")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0 and second.stderr == ""
    assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 0
    assert receiver.totals() == {"after_notice": 4, "_run:script": 1}


def test_an_older_library_reading_the_buffer_sends_no_local_only_count(
    home: Path, receiver: Receiver, tmp_path: Path
) -> None:
    """Local-only lines are of a newer line format: the version before this rule keeps them and never sends them."""
    repo = Path(__file__).resolve().parent.parent
    old = tmp_path / "old"
    old.mkdir()
    commit = "39bd250"  # the library before local-only counts existed
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", commit, "telemetry_rollup"], capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        pytest.skip("needs the git history (not in an sdist)")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True, timeout=60)
    _mode(home, "local")
    env = clean_env(home)
    subprocess.run(
        [sys.executable, "-c", _host(receiver.url, "tr.count('while_local', 5)")], env=env, check=True, timeout=60
    )
    _mode(home, "on")
    subprocess.run(
        [sys.executable, "-c", _host(receiver.url, "tr.count('after_on', 1)")], env=env, check=True, timeout=60
    )
    env_old = {**env, "PYTHONPATH": str(old)}
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import telemetry_rollup, sys; assert telemetry_rollup.__file__.startswith(sys.argv[1]);"
            "from telemetry_rollup.cli import main;"
            "raise SystemExit(main(['flush', '--app', 'acme', '--include-today']))",
            str(old),
        ],
        env=env_old,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert receiver.totals() == {"after_on": 1, "_run:script": 1}
    assert b'"local":true' in b"".join(p.read_bytes() for p in (home / "acme").rglob("*.jsonl"))


# -- item 4: the notice rule is in time, not in runs --------------------------------------------
DAEMON = """
import select, sys, threading, time, telemetry_rollup as tr
tr.configure("acme", endpoint=sys.argv[1], flush_interval=0.5, send_interval=60)
start = time.time()
tr.count("before_notice")
tr.flush()  # shows the notice: these counts stay here
with open(sys.argv[2], "w") as f:
    f.write(str(time.time()))
end = float(sys.argv[3])
while time.time() < end:
    tr.count("tick")
    select.select([], [], [], 0.05)  # time.sleep fails under faketime with a real monotonic clock
"""


@pytest.mark.skipif(not shutil.which("faketime"), reason="faketime not installed")
def test_a_daemon_that_showed_the_notice_sends_from_the_next_utc_day(
    home: Path, receiver: Receiver, tmp_path: Path
) -> None:
    import datetime as dt

    day1 = dt.date(2030, 1, 1)
    midnight = dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc).timestamp()
    shown_at = tmp_path / "shown_at"
    res = subprocess.run(
        [
            "faketime",
            "-f",
            "@2030-01-01 23:59:40 x4",
            sys.executable,
            "-c",
            DAEMON,
            receiver.url,
            str(shown_at),
            str(midnight + 30),
        ],
        env=clean_env(home, DONT_FAKE_MONOTONIC="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "acme collects" in res.stderr
    if float(shown_at.read_text()) >= midnight:
        pytest.skip("the machine was too slow to show the notice before the fake midnight")
    assert receiver.bodies, "the daemon that showed the notice never sent"
    reports = [r for b in receiver.json_bodies() for r in b["reports"]]
    assert {r["day"] for r in reports} == {day1.isoformat()}
    assert "before_notice" not in receiver.totals() and receiver.totals()["tick"] > 0


# -- item 7: ci describes the counts, not the process that sends them --------------------------------
def test_ci_describes_the_counts_not_the_sending_process(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    env = clean_env(home)
    code = _host(receiver.url, "tr.count('build')")
    subprocess.run([sys.executable, "-c", code], env={**env, "CI": "true"}, check=True, timeout=60)
    assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 0  # no CI variable here
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert run_cli(home, "flush", "--app", "acme", "--include-today", GITHUB_ACTIONS="true").returncode == 0
    got = [(b["ci"], sorted(k for r in b["reports"] for k in r["counts"])) for b in receiver.json_bodies()]
    assert got == [(True, ["_run:ci", "_run:script", "build"]), (False, ["_run:script", "build"])]


# -- item 6: the headers on the wire are exactly the documented ones ---------------------------------
def _documented_headers() -> set[str]:
    text = (Path(__file__).resolve().parent.parent / "TELEMETRY.md").read_text()
    para = text.split("**Request headers.** Every request carries exactly these headers:", 1)[1].split(
        "; nothing else"
    )[0]
    return {h for h in re.findall(r"`([A-Za-z-]+)`", para) if h[0].isupper()}


def test_exactly_the_documented_headers_arrive_and_a_tool_with_headers_is_not_called_anonymous(
    home: Path, receiver: Receiver
) -> None:
    assert _documented_headers() == {"Host", "Content-Type", "Content-Length", "User-Agent", "Accept-Encoding"}
    env = clean_env(home)
    code = "\n".join(
        [
            "import sys, telemetry_rollup as tr",
            f"tr.configure('acme', endpoint={receiver.url!r}, headers={{'Authorization': 'Bearer t0k'}})",
            "tr.count('build')",
            "print(tr.send(5, include_today=True))",
        ]
    )
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "acme collects" in first.stderr and "anonymous" not in first.stderr and "sign-in" in first.stderr
    (home / "acme" / "notice").write_text("0")
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert second.stdout.startswith("SendResult(sent=1"), second.stdout + second.stderr
    plant(home, "acme", {(day(-1), "lint"): 1}, endpoint=receiver.url)
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    assert [set(h) for h in receiver.request_headers] == [
        _documented_headers() | {"Authorization"},
        _documented_headers(),
    ]
    other = subprocess.run(
        [sys.executable, "-c", "import telemetry_rollup as tr; tr.configure('other'); tr.count('x')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "other collects anonymous usage counts" in other.stderr


# -- item 9: async with ---------------------------------------------------------------------------
ASYNC_HOST = """
import asyncio, telemetry_rollup as tr
tr.configure("acme", default="local")

async def main():
    async with tr.timed("fetch"):
        await asyncio.sleep(0.02)
    try:
        async with tr.timed("fetch") as t:
            raise KeyError("secret message")
    except KeyError:
        pass
    async with tr.timed("fetch") as t:
        t.error("timeout")

asyncio.run(main())
"""


def test_async_with_timed_counts_outcomes_and_durations(home: Path) -> None:
    res = subprocess.run([sys.executable, "-c", ASYNC_HOST], env=clean_env(home), capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    got: dict[str, int] = {}
    for line in (home / "acme" / "buffer.jsonl").read_text().splitlines():
        obj = json.loads(line)
        got[obj["n"]] = got.get(obj["n"], 0) + obj["c"]
    assert {k: v for k, v in got.items() if not k.startswith(("_run", "fetch:dur"))} == {
        "fetch": 3,
        "fetch:ok": 1,
        "fetch:error": 2,
        "fetch:error:KeyError": 1,
        "fetch:error:timeout": 1,
    }
    assert sum(v for k, v in got.items() if k.startswith("fetch:dur:")) == 3
    assert "secret" not in (home / "acme" / "buffer.jsonl").read_text()


# -- item 8: README's API table is the real signatures ------------------------------------------------
def _plain_signature(name: str, func: object) -> str:
    """``name(a, b=1, *, c=None, **options)``: the signature without annotations, as README writes it."""
    import inspect

    parts = []
    star = False
    for p in inspect.signature(func).parameters.values():  # type: ignore[arg-type]
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
        if p.default is not p.empty:
            text += "=" + (f'"{p.default}"' if isinstance(p.default, str) else repr(p.default))
        parts.append(text)
    return f"{name}({', '.join(parts)})"


def test_readme_api_table_is_the_real_signatures() -> None:
    import telemetry_rollup as tr

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("| call | does |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([A-Za-z_]+\(.*?\))` \|", table, re.MULTILINE)
    names = [d.split("(")[0] for d in documented]
    assert sorted(names) == sorted([*(set(tr.__all__) - {"SendResult", "__version__"})])
    for doc in documented:
        name = doc.split("(")[0]
        assert doc == _plain_signature(name, getattr(tr, name)), name
    assert tr.SendResult._fields == ("sent", "kept", "dropped")
    assert "refused by the receiver for good" in (tr.SendResult.__doc__ or "")


# -- item 10: flush's exit codes, --quiet, off --keep-remote --------------------------------------------
@pytest.mark.parametrize(("status", "code"), [(400, 3), (503, 1), (200, 0)])
def test_flush_exit_code_says_rejected_for_good(home: Path, status: int, code: int) -> None:
    with Receiver(status=status) as rec:
        plant(home, "acme", {(day(-1), "build"): 1}, endpoint=rec.url)
        (home / "acme" / "notice").write_text("0")
        quiet = run_cli(home, "flush", "--app", "acme", "--quiet")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (code, "", "")
        st = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
        assert st["totals"]["reports_rejected"] == (1 if status == 400 else 0)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "3: the receiver refused reports for" in readme and "`--quiet` prints nothing" in readme


def test_off_keep_remote_deletes_everything_and_sends_nothing(home: Path, receiver: Receiver) -> None:
    plant(home, "acme", {(day(-1), "build"): 1}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    assert run_cli(home, "flush", "--app", "acme").returncode == 0  # the machine now has an id
    n = len(receiver.bodies)
    bad = run_cli(home, "off", "--keep-remote")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "--app" in bad.stderr
    res = run_cli(home, "off", "--app", "acme", "--keep-remote", "--timeout", "2")
    assert res.returncode == 0, res.stderr
    assert "skipped (--keep-remote)" in res.stdout
    assert listing(home / "acme") == {"mode.json"}
    time.sleep(0.5)
    assert len(receiver.bodies) == n


# -- item 11: reset-id and off -------------------------------------------------------------------------
def test_reset_id_for_an_app_that_never_ran_creates_nothing(home: Path) -> None:
    res = run_cli(home, "reset-id", "--app", "nosuchapp")
    assert res.returncode == 1 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "nosuchapp has recorded nothing" in res.stderr
    assert not home.exists() or listing(home) == set()


def test_reset_id_asks_to_forget_the_old_id_signed_with_the_old_key(home: Path, receiver: Receiver) -> None:
    from helpers import identity

    from telemetry_rollup._identity import derive_id

    plant(home, "acme", {(day(-1), "build"): 1}, endpoint=receiver.url)
    (home / "acme" / "notice").write_text("0")
    assert run_cli(home, "flush", "--app", "acme").returncode == 0
    old_id, old_key = identity(home / "acme")
    res = run_cli(home, "reset-id", "--app", "acme")
    assert res.returncode == 0 and "deletion request for the old machine id: acknowledged" in res.stdout
    assert old_key not in res.stdout + res.stderr
    new_id, _ = identity(home / "acme")
    assert new_id != old_id
    body = receiver.json_bodies()[-1]
    assert body == {"schema": 2, "app": "acme", "machine_id": old_id, "machine_key": old_key, "forget": True}
    assert derive_id(body["machine_key"]) == body["machine_id"]  # the server's format-2 proof holds
    assert not (home / "acme" / "forget.json").exists()  # acknowledged


def test_reset_id_keeps_the_deletion_request_when_the_server_is_down(home: Path) -> None:
    from helpers import identity

    with Receiver(status=503) as down:
        plant(home, "acme", {}, endpoint=down.url)
        (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
        assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode in (0, 1)
        (home / "acme" / "machine_key").unlink(missing_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from telemetry_rollup import _identity; import sys; _identity.load(sys.argv[1], create=True)",
                str(home / "acme"),
            ],
            check=True,
            timeout=60,
        )
        old_id, old_key = identity(home / "acme")
        res = run_cli(home, "reset-id", "--app", "acme")
        assert res.returncode == 0 and "kept for a later flush" in res.stdout
    kept = json.loads((home / "acme" / "forget.json").read_text())["requests"]
    assert [(r["machine_id"], r["machine_key"]) for r in kept] == [(old_id, old_key)]


def test_off_removes_the_view_page_it_wrote(home: Path, tmp_path: Path) -> None:
    plant(home, "acme", {(day(-1), "build"): 1})
    (home / "acme" / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    mine = tmp_path / "mine.html"
    pages = [Path(run_cli(home, "view", "--no-open", *a).stdout.strip()) for a in ((), ("--app", "acme"))]
    assert run_cli(home, "view", "--no-open", "--out", str(mine)).returncode == 0
    assert all(p.is_file() for p in pages)
    # a planted list cannot make off delete anything else
    victim = tmp_path / "victim.html"
    victim.write_text("keep")
    with open(home / "acme" / "views", "a") as f:
        f.write(f"{victim}\n/etc/passwd\n")
    res = run_cli(home, "off", "--app", "acme")
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in pages)
    assert all(str(p) in res.stdout for p in pages)
    assert victim.read_text() == "keep" and mine.exists()  # a page you named with --out is yours
    assert listing(home / "acme") == {"mode.json"}


# -- item 12: every file the library creates is documented ------------------------------------------
def _documented_files() -> dict[str, list[str]]:
    """docs/design.md's "On disk" block: each entry's name pattern -> the words in backticks of its text."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text()
    block = text.split("<root>/<app>/\n", 1)[1].split("```", 1)[0]
    entries: dict[str, list[str]] = {}
    name = ""
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name = line.split()[0]
            entries[name] = []
        entries[name] += re.findall(r"`([a-z_]+)`", line)
    return entries


def _pattern(name: str) -> re.Pattern[str]:
    rx = re.escape(name)
    for token, repl in (
        (r"<n>", r"\d+"),
        (r"<random>", r"[A-Za-z0-9_-]+"),
        (r"<uuid>", r"[0-9a-f-]{36}"),
        (r"<name>", r".+"),
    ):
        rx = rx.replace(re.escape(token), repl)
    return re.compile(rx.rstrip("/") + "$")


def test_every_file_the_library_creates_is_documented(home: Path, tmp_path: Path) -> None:
    from helpers import lock_held_elsewhere

    env = clean_env(home)
    app = home / "acme"
    with Receiver(status=503) as down:  # the server is down: reports, carry and back-off stay
        host = "\n".join(
            [
                "import telemetry_rollup as tr",
                f"tr.configure('acme', endpoint={down.url!r}, app_version='1.0', allow=['build'],",
                "             notice_url='https://example.com/t', headers={'Authorization': 'Bearer x'})",
                "tr.count('build')",
            ]
        )

        def run_host() -> None:
            subprocess.run([sys.executable, "-c", host], env=env, check=True, timeout=60, capture_output=True)

        seen: set[str] = set()

        def look() -> None:
            seen.update(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file())

        run_host()  # config.json, notice, buffer.jsonl and its lock
        _mode(home, "local")  # mode.json
        _mode(home, "on")
        (app / "notice").write_text("0")  # shown long ago: sends may go
        look()
        with lock_held_elsewhere(app / "buffer.jsonl.lock"):
            run_host()  # spill/<random>.jsonl; reports are due, so autosend.<n> and the detached sender
            look()
        assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 1
        look()  # outbox, sender.lock, state.json, schedule, machine_key
        run_host()
        assert run_cli(home, "view", "--no-open").returncode == 0  # views
        assert run_cli(home, "reset-id", "--app", "acme").returncode == 0  # forget.json (the server is down)
        look()
    created = seen
    documented = _documented_files()
    patterns = {name: _pattern(name) for name in documented}
    undocumented = {c for c in created if not any(p.match(c) for p in patterns.values())}
    assert undocumented == set()
    made = {name for name, p in patterns.items() if any(p.match(c) for c in created)}
    # not made by real use here: an older version's file, and two that exist only for an instant
    assert set(documented) - made == {
        "machine_id",
        "outbox/gen-<random>/inputs/<random>.jsonl",
        ".<name>.<random>.tmp",
    }
    # every config.json key, and TELEMETRY.md lists every file too
    assert set(json.loads((app / "config.json").read_text())) == set(documented["config.json"]) - {"configure"}
    telemetry = (Path(__file__).resolve().parent.parent / "TELEMETRY.md").read_text()
    where = telemetry.split("## Where the files are", 1)[1].split("## Turning it off", 1)[0]
    for name in documented:
        short = [name, name.replace("outbox/gen-<random>/", ""), name.replace("outbox/", "")]
        assert any(f"`{n}`" in where for n in short), name
    for key in documented["config.json"]:
        assert key == "configure" or f"`{key}`" in where, key


def test_off_of_an_app_that_recorded_nothing_deletes_nothing_it_made_itself(home: Path) -> None:
    """off took its locks (making their files) and then listed them as deleted data."""
    res = run_cli(home, "off", "--app", "acme")
    assert res.returncode == 0 and "acme: nothing to delete." in res.stdout, res.stdout
    assert listing(home / "acme") == {"mode.json"}


def test_counts_made_before_an_explicit_on_in_a_process_never_told_are_not_sent(home: Path, receiver: Receiver) -> None:
    """The process counted under the default, before any notice; the user switched on while it
    ran: what it counted before it saw the switch was never announced, so it stays here."""
    on = [sys.executable, "-m", "telemetry_rollup", "on", "--app", "acme"]
    code = _host(receiver.url, "tr.count('unannounced', 3)", f"subprocess.run({on!r}, check=True, capture_output=True)")
    res = subprocess.run([sys.executable, "-c", code], env=clean_env(home), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr  # an explicit on: no notice
    assert run_cli(home, "flush", "--app", "acme", "--include-today").returncode == 0
    assert receiver.bodies == []
    assert json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]["local_only"]["counts"] == 4


def test_a_carry_of_local_only_counts_starts_no_sender(home: Path, receiver: Receiver) -> None:
    """Only local-only counts of a past day are left: an exiting run must not start a detached
    sender (once per send interval, for 30 days) that has nothing to send."""
    d = plant(home, "acme", {}, endpoint=receiver.url, send_interval=60)
    (d / "mode.json").write_text('{"mode": "on", "at": "2020-01-01T00:00:00Z"}')
    (d / "buffer.jsonl").write_text(json.dumps({"v": 2, "d": day(-1), "n": "x", "c": 1, "local": True}) + "\n")
    assert run_cli(home, "flush", "--app", "acme").returncode == 0  # into the carry; nothing sent
    assert b'"local":true' in next((d / "outbox").rglob("carry.jsonl")).read_bytes()
    code = _host(receiver.url, "tr.count('today')")
    subprocess.run([sys.executable, "-c", code], env=clean_env(home), check=True, timeout=60)
    assert not [p for p in listing(d) if p.startswith("autosend.")]
    assert receiver.bodies == []
