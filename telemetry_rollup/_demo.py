"""``python -m telemetry_rollup demo``: the whole path once, on this machine, in a throwaway root.

Starts the reference server on a free 127.0.0.1 port with a throwaway SQLite file, writes a
sample CLI that counts its subcommands, runs it several times in separate processes, rolls the
counts up and sends them with ``flush --include-today``, sends the same request body again to
show the server counts it once, prints the report, and stops everything it started.

The user's own data and choices are never touched: ``TELEMETRY_ROLLUP_HOME`` points at the
throwaway root in the child processes' environment only, and the demo's own process counts
nothing. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

PROG = "telemetry_rollup demo"
APP = "demo-cli"
#: one sample-CLI process per entry: the subcommands it counts
RUNS: tuple[tuple[str, ...], ...] = (
    ("build",),
    ("build", "test"),
    ("lint",),
    ("build", "test"),
    ("build", "deploy"),
)
STEP_TIMEOUT = 30.0
HELP = """\
usage: python -m telemetry_rollup demo

Runs the whole path once on this machine, in a few seconds, in a throwaway directory:
starts the reference server on a free 127.0.0.1 port with a new SQLite file, runs a
sample CLI that counts its subcommands five times in parallel, sends the counts with
"flush --include-today", sends the same request again (stored once), prints the report
and checks its totals, then stops the server and removes the directory.

Your own data and choices are never read or written, and nothing leaves 127.0.0.1.
Needs the server extra. Exit codes: 0 the totals match, 1 a step failed, 2 usage or
the server extra missing, 130 interrupted.
"""

SAMPLE_CLI = '''\
"""demo-cli: a tiny command-line tool that counts which of its subcommands are used."""
import sys

import telemetry_rollup as tr

tr.configure("demo-cli", endpoint="{endpoint}", app_version="1.0.0")


def main(argv):
    for command in argv:
        tr.count(command)  # in memory; the exit hook appends it to the local buffer
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


class DemoError(Exception):
    """A step failed; the message is one line for stderr."""


def expected_totals(runs: tuple[tuple[str, ...], ...] = RUNS) -> dict[str, int]:
    """What the report must show after the demo: each subcommand once per run that used it."""
    totals: dict[str, int] = {}
    for run in runs:
        for name in run:
            totals[name] = totals.get(name, 0) + 1
    return dict(sorted(totals.items()))


def _server_extra_missing() -> bool:
    import importlib.util

    try:
        return any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn"))
    except ImportError:  # a finder that refuses the name, or a broken parent package
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_group(proc: subprocess.Popen[Any], grace: float) -> None:
    """Stop a process started in its own session (and whatever it started), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    posix = os.name == "posix"
    with contextlib.suppress(OSError):
        if posix:
            os.killpg(proc.pid, signal.SIGTERM)
        else:  # pragma: no cover - Windows
            proc.terminate()
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(OSError):
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Demo:
    """Everything the demo starts, so that :meth:`cleanup` can stop it all."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tmp = Path(tempfile.mkdtemp(prefix="telemetry-rollup-demo-"))
        self.home = self.tmp / "home"
        self.db_url = f"sqlite:///{self.tmp / 'demo.db'}"  # absolute path: sqlite:////tmp/...
        self.server: subprocess.Popen[bytes] | None = None
        self.children: list[subprocess.Popen[Any]] = []
        self.endpoint = ""
        self.env = self._child_env(os.environ)

    def _child_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        env = dict(environ)
        env["TELEMETRY_ROLLUP_HOME"] = str(self.home)
        # Consent made explicit for this throwaway app; DO_NOT_TRACK would override it, and the
        # counts go to a local server in a directory removed at the end, so it is set aside.
        env["DEMO_CLI_TELEMETRY"] = "on"
        env.pop("DO_NOT_TRACK", None)
        # The children import this very copy of the package, however the demo was started.
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
        return env

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- steps -------------------------------------------------------------------------------
    def run(self) -> int:
        self.say("telemetry_rollup demo: the whole path on this machine; nothing leaves 127.0.0.1.")
        self.say(f"  throwaway data root {self.home} (your own data and choices are not touched)")
        self.start_server()
        script = self.write_sample_cli()
        self.run_sample_cli(script)
        bodies = self.roll_up()
        self.flush()
        self.resend(bodies)
        self.report()
        return 0

    def start_server(self) -> None:
        last = ""
        for _ in range(3):  # a free port can be taken between the probe and the bind: try another
            port = _free_port()
            logs = self.tmp / f"server-{port}.log"
            with open(logs, "wb") as log:
                self.server = subprocess.Popen(
                    [sys.executable, "-m", "telemetry_rollup.server", "--db", self.db_url, "--port", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    start_new_session=os.name == "posix",
                )
            base = f"http://127.0.0.1:{port}"
            if self._wait_healthy(self.server, base):
                self.endpoint = base + "/v1/rollups"
                self.say(f"1. server      {base}  (python -m telemetry_rollup.server, SQLite {self.db_url})")
                return
            last = _tail(logs)
            _kill_group(self.server, 2.0)
        raise DemoError(f"the server did not start: {last or 'no output'}")

    @staticmethod
    def _wait_healthy(proc: subprocess.Popen[bytes], base: str) -> bool:
        import urllib.request

        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as resp:  # noqa: S310 - our own http URL
                    if resp.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def write_sample_cli(self) -> Path:
        script = self.tmp / "demo_cli.py"
        script.write_text(SAMPLE_CLI.format(endpoint=self.endpoint))
        self.say(f'2. sample CLI  {script.name}: tr.configure("{APP}", endpoint=...) and tr.count(subcommand)')
        return script

    def run_sample_cli(self, script: Path) -> None:
        for run in RUNS:
            self.children.append(
                subprocess.Popen(
                    [sys.executable, str(script), *run],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=self.env,
                )
            )
        for proc in self.children:
            try:
                _, stderr = proc.communicate(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise DemoError("the sample CLI did not finish") from None
            if proc.returncode != 0:
                raise DemoError(f"the sample CLI failed: {stderr.decode(errors='replace').strip()[-300:]}")
        self.children.clear()
        runs = " | ".join(" ".join(r) for r in RUNS)
        self.say(f"   ran it {len(RUNS)} times, in parallel processes: {runs}")
        self.say(f"   each run appended its counts to {self.home / APP / 'buffer.jsonl'} as it exited")

    def roll_up(self) -> list[bytes]:
        """The sender's build step, in this process: the reports and the exact request bodies
        that ``flush`` will then POST (committed reports are immutable, ids included)."""
        from ._days import today_iso
        from ._names import is_name
        from ._sender import Pipeline, meta_for
        from ._store import AppStore

        assert is_name(APP)
        store = AppStore(self.home / APP)
        with store.lock_sender(STEP_TIMEOUT):
            pipe = Pipeline(store)
            gen = pipe.recover()
            pipe.claim(gen, timeout=STEP_TIMEOUT)
            gen, _ = pipe.build(gen, today=today_iso(time.time()), include_today=True)
            reports = [r for _, r in pipe.pending_reports(gen)]
            meta = meta_for(store, store.config(), self.env, create_id=True)
            bodies = [body for _, body in pipe.request_bodies(gen, meta)]
        for r in reports:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
            self.say(f"3. roll-up     report {r['id'][:8]}… for {r['day']}: {counts}")
        if not reports:
            raise DemoError("nothing was counted")
        return bodies

    def flush(self) -> None:
        cmd = ["flush", "--include-today", "--app", APP]
        proc = self._run_cli(cmd)
        if proc.returncode != 0:
            raise DemoError(f"flush failed: {(proc.stdout + proc.stderr).strip()}")
        self.say(f"4. send        python -m telemetry_rollup {' '.join(cmd)}")
        self.say(f"   {proc.stdout.strip()}")

    def resend(self, bodies: list[bytes]) -> None:
        from ._transport import post

        stored = duplicates = 0
        for body in bodies:
            outcome = post(self.endpoint, body, timeout=10.0)
            if outcome.kind != "sent" or outcome.body is None:
                raise DemoError(f"the resend was not accepted: {outcome.detail}")
            stored += int(outcome.body.get("stored", 0))
            duplicates += int(outcome.body.get("duplicates", 0))
        self.say("5. resend      the same request body again, as a sender killed before it saw the answer would:")
        self.say(f"   server answered stored {stored}, duplicates {duplicates}: nothing is counted twice")
        if stored:
            raise DemoError("the server stored a report twice")

    def report(self) -> None:
        import json

        args = ["report", "--db", self.db_url, "--app", APP, "--days", "2"]
        check = self._run_cli([*args, "--format", "json"])
        table = self._run_cli(args)
        if check.returncode != 0 or table.returncode != 0:
            raise DemoError(f"report failed: {(check.stderr + table.stderr).strip()}")
        totals: dict[str, int] = {}
        for row in json.loads(check.stdout)["counts"]:
            if not row["name"].startswith("_"):  # the library's own counters (_run:script, ...)
                totals[row["name"]] = totals.get(row["name"], 0) + int(row["total"])
        want = expected_totals()
        self.say(f"6. report      python -m telemetry_rollup {' '.join(args)}")
        self.say()
        self.out.write(table.stdout)
        self.say()
        shown = ", ".join(f"{k} {v}" for k, v in want.items())
        if totals != want:
            raise DemoError(f"the report shows {totals}, expected {want}")
        self.say(f"Totals match the {len(RUNS)} runs exactly ({shown}).")

    def _run_cli(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry_rollup", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.children.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoError(f"python -m telemetry_rollup {args[0]} did not finish") from None
        self.children.remove(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    # -- teardown ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Stop every process the demo started and remove the throwaway directory."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.children.clear()
        if self.server is not None:
            _kill_group(self.server, 10.0)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.say(f"Stopped the server and removed {self.tmp}.")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same way out as Ctrl-C, so the cleanup runs for both."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo_main(argv: list[str], out: IO[str], err: IO[str]) -> int:
    """Run the demo; returns the exit code (0 ok, 1 a step failed, 2 usage or missing extra, 130 interrupted)."""
    if argv:
        if argv[0] in ("-h", "--help"):
            out.write(HELP)
            return 0
        err.write(f"{PROG}: takes no arguments\n")
        return 2
    if _server_extra_missing():
        err.write(
            f"{PROG}: the demo runs the server: install the [server] extra, pip install '.[server]' from a"
            " checkout (pip install 'telemetry-rollup[server]' once published)\n"
        )
        return 2
    with _sigterm_as_interrupt():
        demo = Demo(out)
        try:
            return demo.run()
        except KeyboardInterrupt:
            err.write(f"{PROG}: interrupted\n")
            return 130
        except DemoError as exc:
            err.write(f"{PROG}: {exc}\n")
            return 1
        except Exception as exc:  # one line, never a traceback
            err.write(f"{PROG}: {type(exc).__name__}: {exc}\n")
            return 1
        finally:
            demo.cleanup()
