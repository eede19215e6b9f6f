"""End to end through real processes and real HTTP: client processes -> ``flush`` -> the
reference server -> its database -> ``report``, with exact totals, also while the sender is
SIGKILLed at random instants and the server is killed and restarted; the server's 429 +
Retry-After honoured by the client; and ``python -m telemetry_rollup demo`` itself.

Every process is started here with the test's own ``TELEMETRY_ROLLUP_HOME`` (tests/conftest.py)
and stopped by the ``procs`` fixture, detached senders that the clients' exit hooks start included.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers import identity

from telemetry_rollup._demo import expected_totals
from telemetry_rollup._names import env_prefix_for

CLIENT = """
import sys
import telemetry_rollup as tr

app, endpoint = sys.argv[1], sys.argv[2]
tr.configure(app, endpoint=endpoint, app_version="2.0.0")
for pair in sys.argv[3:]:
    name, n = pair.split("=")
    if int(n) <= 20:
        for _ in range(int(n)):
            tr.count(name)  # the hot path, one at a time
    else:
        tr.count(name, int(n))
"""

# Far above what the tests send; the 429 test configures its own.
OPEN_LIMITS = {"limits": {"per_machine": 100_000, "per_address": 100_000}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProc:
    """``python -m telemetry_rollup.server`` on a fixed port and database, restartable."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.db_url = f"sqlite:///{workdir / 'e2e.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = self.url + "/v1/rollups"
        self.config_path = workdir / "server-config.json"
        self.config_path.write_text(json.dumps(config))
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ServerProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [sys.executable, "-m", "telemetry_rollup.server", "--db", self.db_url, "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*args, "--config", str(self.config_path)], stdout=log, stderr=log, start_new_session=True
            )
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()}"
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        raise AssertionError(f"server not healthy: {self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


class Procs:
    """Every process a test starts, so that teardown can stop what a failure left running."""

    def __init__(self, home: Path, tmp: Path) -> None:
        self.home = home
        self.tmp = tmp
        self.client = tmp / "client.py"
        self.client.write_text(CLIENT)
        self.started: list[subprocess.Popen[Any]] = []
        self.servers: list[ServerProc] = []

    def env(self, *apps: str) -> dict[str, str]:
        env = dict(os.environ)  # TELEMETRY_ROLLUP_HOME from conftest, DO_NOT_TRACK removed
        assert env["TELEMETRY_ROLLUP_HOME"] == str(self.home)
        for app in apps:
            env[f"{env_prefix_for(app)}_TELEMETRY"] = "on"  # explicit consent: no notice
        return env

    def server(self, config: dict[str, Any] | None = None) -> ServerProc:
        server = ServerProc(self.tmp, OPEN_LIMITS if config is None else config)
        self.servers.append(server)
        return server.start()

    def start_client(self, app: str, endpoint: str, counts: dict[str, int]) -> subprocess.Popen[str]:
        args = [sys.executable, str(self.client), app, endpoint, *(f"{k}={v}" for k, v in counts.items())]
        proc = subprocess.Popen(args, env=self.env(app), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def start_flush(self, *args: str, apps: tuple[str, ...]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry_rollup", "flush", *args],
            env=self.env(*apps),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def flush(self, *args: str, apps: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        proc = self.start_flush(*args, apps=apps)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def detached_senders(self) -> list[int]:
        """PIDs of ``flush --if-due`` processes started (detached) by exit hooks for this home."""
        marker = f"TELEMETRY_ROLLUP_HOME={self.home}".encode() + b"\0"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if b"telemetry_rollup\0flush\0" in cmdline and b"--if-due" in cmdline and marker in b"\0" + environ:
                found.append(int(entry.name))
        return found

    def wait_detached(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.detached_senders() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if Path("/proc").is_dir():
            self.wait_detached(timeout=15)
            for pid in self.detached_senders():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for server in self.servers:
            server.kill(signal.SIGTERM)


@pytest.fixture
def procs(home: Path, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(home, tmp_path)
    yield p
    p.stop_all()


def wait_ok(clients: list[subprocess.Popen[str]]) -> None:
    for proc in clients:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out == "" and err == "", (out, err)  # the library never prints; consent was explicit


def report(server: ServerProc, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "telemetry_rollup",
            "report",
            "--db",
            server.db_url,
            "--days",
            "2",
            "--format=json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def totals(rep: dict[str, Any]) -> Counter[tuple[str, str]]:
    """(app, name) -> total, summed over days (a run across UTC midnight counts on two days)."""
    out: Counter[tuple[str, str]] = Counter()
    for row in rep["counts"]:
        if not row["name"].startswith("_"):  # the library's own counters (_run:script) are not the clients'
            out[(row["app"], row["name"])] += row["total"]
    return out


def pending(home: Path, app: str) -> list[str]:
    """Anything of ``app`` not yet delivered: buffer, spill files, carry, reports in the outbox."""
    d = home / app
    left = [p.name for p in d.glob("spill/*.jsonl")]
    left += [p.name for p in d.glob("outbox/gen-*/reports/*.json")]
    left += [p.name for p in d.glob("outbox/gen-*/inputs/*.jsonl")]
    for p in (d / "buffer.jsonl", *d.glob("outbox/gen-*/carry.jsonl")):
        if p.exists() and p.stat().st_size:
            left.append(p.name)
    return left


# -- many clients, exact totals ------------------------------------------------------------------


def test_many_client_processes_flush_server_report_exact_totals(procs: Procs, home: Path) -> None:
    server = procs.server()
    apps = ("e2e-alpha", "e2e-beta")
    expected: Counter[tuple[str, str]] = Counter()
    clients = []
    for i in range(20):
        app = apps[i % 2]
        counts = {"build": i + 1, "lint": 1 + i % 3}
        if i % 4 == 0:
            counts["cmd.deploy"] = 1000 + i  # count(name, n)
        if i % 5 == 0:
            counts["test"] = 7
        for name, n in counts.items():
            expected[(app, name)] += n
        clients.append(procs.start_client(app, server.endpoint, counts))
    wait_ok(clients)

    done = procs.flush("--include-today", apps=apps)
    assert done.returncode == 0, done.stdout + done.stderr
    for app in apps:
        assert re.search(rf"^{app}: mode on; \d+ new report\(s\); sent \d+, kept 0, rejected 0$", done.stdout, re.M), (
            done.stdout
        )
        assert pending(home, app) == []

    rep = report(server)
    assert totals(rep) == expected
    # One data root is one machine per app: every row was counted on exactly one machine.
    assert {row["machines"] for row in rep["counts"]} == {1}
    assert {(r["app"], r["value"]) for r in rep["machines"]["app_version"]} == {(a, "2.0.0") for a in apps}

    # A second flush has nothing to send and changes nothing.
    again = procs.flush("--include-today", apps=apps)
    assert again.returncode == 0
    assert again.stdout.count("nothing sent: nothing due") == 2, again.stdout
    assert totals(report(server)) == expected
    assert totals(report(server, "--app", "e2e-beta")) == Counter(
        {k: v for k, v in expected.items() if k[0] == "e2e-beta"}
    )


# -- faults: the sender SIGKILLed at random instants, the server killed and restarted ---------------


@pytest.mark.slow
def test_sender_sigkilled_and_server_restarted_every_count_lands_exactly_once(procs: Procs, home: Path) -> None:
    seed = int(os.environ.get("E2E_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"E2E_SEED={seed}")
    server = procs.server()
    apps = ("e2e-faults",)
    app = apps[0]
    names = ("build", "lint", "test", "cmd.run")
    expected: Counter[tuple[str, str]] = Counter()
    killed_running = 0
    deadlines: list[str] = []
    rounds = 24
    kill_server_at = 10
    for r in range(rounds):
        clients = []
        for _ in range(3):
            counts = {name: rng.randint(1, 30) for name in rng.sample(names, rng.randint(1, len(names)))}
            for name, n in counts.items():
                expected[(app, name)] += n
            clients.append(procs.start_client(app, server.endpoint, counts))
        if r == kill_server_at:
            # The server dies mid-run (SIGKILL: no graceful shutdown) while a flush is under way.
            flush = procs.start_flush("--include-today", "--timeout", "5", apps=apps)
            time.sleep(rng.uniform(0.0, 0.3))
            server.kill(signal.SIGKILL)
            flush.communicate(timeout=60)
        elif r == kill_server_at + 1:
            procs.flush("--include-today", apps=apps)  # a whole flush against no server: all kept
            server.start()  # same port, same database file
        elif r % 3 == 2:
            # A deadline that ends while the request is in flight: the server may store reports
            # that the client keeps and sends again later, under the same ids.
            timeout = f"{rng.uniform(0.005, 0.1):.3f}"
            deadlines.append(procs.flush("--include-today", "--timeout", timeout, apps=apps).stdout.strip())
        else:
            flush = procs.start_flush("--include-today", "--timeout", "5", apps=apps)
            time.sleep(rng.uniform(0.0, 0.3))
            if flush.poll() is None:
                killed_running += 1
            flush.kill()
            flush.communicate(timeout=10)
        wait_ok(clients)
    assert server.starts == 2
    print(f"killed while running: {killed_running}; short deadlines: {deadlines}")
    assert killed_running >= 3, "some kills must land while the sender runs"

    # Exit hooks may have started detached `flush --if-due` senders; let them finish first.
    procs.wait_detached()
    for _ in range(3):
        final = procs.flush("--include-today", apps=apps)
        if not pending(home, app):
            break
    assert final.returncode == 0, final.stdout + final.stderr
    assert pending(home, app) == []

    assert totals(report(server)) == expected, f"E2E_SEED={seed}"


# -- 429 + Retry-After honoured by the client ------------------------------------------------------


def test_rate_limit_retry_after_is_honoured_by_automatic_flush_but_not_explicit(procs: Procs, home: Path) -> None:
    window = 600  # Retry-After ~600 s: far beyond the client's own first back-off (60 s +- 20%)
    server = procs.server({"limits": {"per_machine": 1, "per_address": 1000, "window_seconds": window}})
    app = "e2e-limited"
    apps = (app,)
    state_file = home / app / "state.json"

    wait_ok([procs.start_client(app, server.endpoint, {"build": 1})])
    first = procs.flush("--include-today", apps=apps)
    assert first.returncode == 0 and "sent 1, kept 0" in first.stdout, first.stdout

    wait_ok([procs.start_client(app, server.endpoint, {"build": 2})])
    limited = procs.flush("--include-today", apps=apps)
    assert limited.returncode == 1, limited.stdout  # a report was kept
    assert "sent 0, kept 1, rejected 0; (HTTP 429)" in limited.stdout
    state = json.loads(state_file.read_text())
    assert state["last_attempt"]["status"] == 429

    # The server's own Retry-After for this machine, right now.
    machine_id, machine_key = identity(home / app)
    probe = requests.post(
        server.endpoint,
        json={
            "schema": 2,
            "app": app,
            "app_version": "2.0.0",
            "lib_version": "0.1.0",
            "machine_id": machine_id,
            "machine_key": machine_key,
            "os": "linux",
            "arch": "x86_64",
            "python": "3.11",
            "ci": False,
            "reports": [{"id": str(uuid.uuid4()), "day": report(server)["until"], "counts": {"probe": 1}}],
        },
        timeout=10,
    )
    probed_at = time.time()
    assert probe.status_code == 429
    retry_after = int(probe.headers["Retry-After"])
    assert retry_after > 500
    # Both answers point at the same window end (Retry-After is rounded up to whole seconds).
    assert state["next_attempt_at"] >= probed_at + retry_after - 2
    assert state["next_attempt_at"] - state["last_attempt"]["at"] > 500

    # An automatic flush does not send before then: no request, state untouched, report kept.
    auto = procs.flush("--if-due", apps=apps)
    assert auto.returncode == 0 and auto.stdout == "", auto.stdout
    assert json.loads(state_file.read_text()) == state
    assert len(pending(home, app)) == 1

    # An explicit flush sends at once (the server, still limiting, answers 429 again).
    explicit = procs.flush(apps=apps)
    assert "(HTTP 429)" in explicit.stdout, explicit.stdout
    after = json.loads(state_file.read_text())
    assert after["last_attempt"]["at"] > state["last_attempt"]["at"]

    # A restarted server forgets its in-memory limits; the client's back-off still holds the
    # automatic flush, while an explicit one delivers.
    server.kill(signal.SIGTERM)
    server.start()
    assert procs.flush("--if-due", apps=apps).stdout == ""
    assert totals(report(server)) == Counter({(app, "build"): 1})
    delivered = procs.flush(apps=apps)
    assert delivered.returncode == 0 and "sent 1, kept 0" in delivered.stdout, delivered.stdout
    assert totals(report(server)) == Counter({(app, "build"): 3})
    assert json.loads(state_file.read_text())["next_attempt_at"] == 0


# -- the demo ---------------------------------------------------------------------------------------


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_end_to_end_and_cleans_up(home: Path) -> None:
    env = dict(os.environ)
    env["DO_NOT_TRACK"] = "1"  # the user's own choice; the demo's throwaway app sets it aside
    start = time.monotonic()
    proc = _demo(env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert elapsed < 30
    out = proc.stdout

    # The printed report table, summed per name over days, is exactly what the runs counted.
    shown: Counter[str] = Counter()
    for m in re.finditer(r"^  demo-cli  \d{4}-\d\d-\d\d  (\S+) +(\d+) +(\d+)  █", out, re.M):
        shown[m.group(1)] += int(m.group(2))
        assert m.group(3) == "1"  # one machine
    assert (
        {k: v for k, v in shown.items() if not k.startswith("_")}
        == expected_totals()
        == {"build": 4, "deploy": 1, "lint": 1, "test": 2}
    )
    assert "server answered stored 0, duplicates 1: nothing is counted twice" in out
    assert "sent 1, kept 0, rejected 0" in out

    # Everything it started is stopped, its directory removed, the user's data root untouched.
    server_url = re.search(r"^1\. server +(http://127\.0\.0\.1:\d+)", out, re.M)
    removed = re.search(r"^Stopped the server and removed (\S+)\.$", out, re.M)
    assert server_url and removed, out
    assert not Path(removed.group(1)).exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(server_url.group(1) + "/healthz", timeout=2)
    assert not home.exists()


def test_demo_without_the_server_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # A finder that refuses fastapi and uvicorn, as in an environment without the extra.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoServerExtra:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _NoServerExtra())\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH", "")) if p)
    proc = _demo(env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "pip install 'telemetry-rollup[server]'" in proc.stderr


# -- a server that accepts and never answers ------------------------------------------------------


def test_frozen_server_bounds_the_flush_and_the_late_delivery_is_not_counted_twice(procs: Procs, home: Path) -> None:
    server = procs.server()
    app = "e2e-frozen"
    apps = (app,)
    wait_ok([procs.start_client(app, server.endpoint, {"build": 5, "lint": 2})])
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGSTOP)  # the kernel still accepts; nothing answers
    try:
        start = time.monotonic()
        stuck = procs.flush("--include-today", "--timeout", "1", apps=apps)
        elapsed = time.monotonic() - start
    finally:
        os.killpg(server.proc.pid, signal.SIGCONT)
    assert elapsed < 5, elapsed  # bounded by --timeout, not by the server
    assert stuck.returncode == 1 and "sent 0, kept 1, rejected 0; (no answer within" in stuck.stdout, stuck.stdout
    assert len(pending(home, app)) == 1

    # Thawed, the server reads the abandoned request from its socket and stores it; the client
    # did not see that, so it sends the same report again: a duplicate, counted once.
    deadline = time.monotonic() + 10
    while not report(server)["counts"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert totals(report(server)) == Counter({(app, "build"): 5, (app, "lint"): 2})
    again = procs.flush(apps=apps)
    assert again.returncode == 0 and "sent 1, kept 0" in again.stdout, again.stdout
    assert pending(home, app) == []
    assert totals(report(server)) == Counter({(app, "build"): 5, (app, "lint"): 2})
