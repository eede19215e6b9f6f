"""``altimate``: an Altimate-Code-like agent CLI rebuilt on telemetry_rollup (seeds 000, 001).

Several agent sessions run concurrently in one process. The seed kept ``enabled``, ``sessionId``
and the buffer in module globals, so one session's ``setContext`` or ``shutdown`` clobbered
the others. Here each :class:`Session` holds only its own state (start time, its own tallies for
the outcome) and reports through one thread-safe :class:`telemetry_rollup.Telemetry`, whose only
operation is adding to counters: ending a session changes nothing for the others, and there is
no session id to overwrite because nothing is sent per session, only daily sums.

Two tiers, as in the seed: a signed-in user (``ALTIMATE_TOKEN``) sends with ``Authorization:
Bearer`` through ``configure(headers=callable)`` (in-process only, never on disk); anyone else
sends anonymously to ``ALTIMATE_TELEMETRY_URL``; with neither, telemetry is not configured at
all (zero files, zero requests). ``ALTIMATE_TELEMETRY_DISABLED=true`` or ``DO_NOT_TRACK=1``
turns it off.

Run it::

    ALTIMATE_TELEMETRY_URL=http://127.0.0.1:8000/v1/rollups \\
        python examples/altimate_like/altimate.py run --sessions 3 --prompt "select 1"
    python examples/altimate_like/altimate.py telemetry show --include-today

Counters (TELEMETRY.md of the seed, in rollup form): ``session``/``session:ok|error``/
``session:dur:<bucket>``, ``session.forked``, ``generation`` (+ ``:ok``, ``:dur:<bucket>``),
``generation.model:<id>``, ``generation.tokens_in`` and ``generation.tokens_out`` (sums),
``tool_call`` (+ ``:ok|error``, ``:dur:<bucket>``), ``tool:<name>``, ``tool.category:<cat>``,
``command:<name>``, ``command.source:<source>``, ``error`` + ``error:error:<ExceptionType>``,
``agent.outcome:<status>``. Never prompts, SQL, arguments, outputs, paths or messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from telemetry_rollup import Telemetry
from telemetry_rollup.cli import add_telemetry_command

APP = "altimate"
TOOLS = {"sql_execute": "warehouse", "dbt_run": "dbt", "read_file": "fs", "grep": "fs", "lineage": "analysis"}
MODELS = ("claude-sonnet-4", "gpt-4o", "local")
COMMANDS = {"init": "command", "review": "skill", "lineage-report": "mcp"}


def _token(value: str, known: Sequence[str]) -> str:
    """A value from a fixed list, or ``other``: nothing free-form reaches a counter name."""
    return value if value in known else "other"


class Session:
    """One agent session. Its state is its own; the Telemetry it reports to is only added to."""

    def __init__(self, tel: Telemetry, *, forked_from: Session | None = None) -> None:
        self._tel = tel
        self._timer = tel.timed("session")
        self.generations = 0
        self.tool_calls = 0
        self.failed = False
        if forked_from is not None:
            tel.count("session.forked")

    def __enter__(self) -> Session:
        self._timer.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        outcome = "error" if exc_type is not None or self.failed else ("completed" if self.generations else "empty")
        self._tel.count(f"agent.outcome:{outcome}")
        self._timer.__exit__(exc_type, exc, tb)

    def generation(self, model: str, prompt: str, tokens_in: int, tokens_out: int) -> str:
        with self._tel.timed("generation"):
            time.sleep(0.001)  # the model call; the prompt never leaves this method
            self._tel.count(f"generation.model:{_token(model, MODELS)}")
            self._tel.count("generation.tokens_in", tokens_in)  # summed per day
            self._tel.count("generation.tokens_out", tokens_out)
        self.generations += 1
        return f"answer to {len(prompt)} characters"

    def tool_call(self, tool: str, args: dict[str, Any]) -> str:
        self.tool_calls += 1
        self._tel.count(f"tool:{_token(tool, list(TOOLS))}")
        self._tel.count(f"tool.category:{TOOLS.get(tool, 'other')}")
        with self._tel.timed("tool_call") as t:
            if tool == "sql_execute" and "drop" in str(args.get("sql", "")).lower():
                t.error("permission_denied")  # an error code from a fixed set, never the SQL
                return "denied"
            return f"{tool} ok"

    def command(self, name: str) -> None:
        self._tel.count(f"command:{_token(name, list(COMMANDS))}")
        self._tel.count(f"command.source:{COMMANDS.get(name, 'other')}")

    def error(self, exc: BaseException) -> None:
        """An unhandled error: its type only (the seed sent a truncated message; we send none)."""
        self.failed = True
        self._tel.count("error", outcome="error", error_code=type(exc).__name__)


def make_telemetry(environ: Any = os.environ) -> Telemetry:
    """Configured only when there is somewhere to send to (seed 001: no config = disabled)."""
    tel = Telemetry()
    if environ.get("ALTIMATE_TELEMETRY_DISABLED", "").strip().lower() in ("1", "true", "yes"):
        return tel  # unconfigured: off, no file, no thread
    token = environ.get("ALTIMATE_TOKEN")
    url = environ.get("ALTIMATE_TELEMETRY_URL")
    if not token and not url:
        return tel
    tel.configure(
        APP,
        endpoint=url or "https://altimate.example.com/api/observability/ingest",
        app_version="0.5.0",
        allow=[
            "session*",
            "generation*",
            "tool:*",
            "tool.category:*",
            "tool_call*",
            "command:*",
            "command.source:*",
            "error*",
            "agent.outcome:*",
        ],
        headers=(lambda: {"Authorization": f"Bearer {token}"}) if token else None,
        flush_interval=5.0,
        notice_url="https://example.com/altimate/telemetry",
    )
    return tel


def script(session: Session, n: int, prompt: str, sql: str, path: str) -> None:
    """A fixed workload per session, so a test can predict the day's sums exactly."""
    session.command("init")
    session.generation(MODELS[n % 2], prompt, tokens_in=100 + n, tokens_out=10)
    session.tool_call("sql_execute", {"sql": sql})
    session.tool_call("read_file", {"path": path})
    session.generation("claude-sonnet-4", prompt, tokens_in=50, tokens_out=5)
    try:
        raise ValueError(f"could not parse {path}: {prompt}")  # a message that must never be sent
    except ValueError as exc:
        session.error(exc)


def run_sessions(tel: Telemetry, count: int, prompt: str, sql: str, path: str) -> None:
    """Half the sessions on threads, half as asyncio tasks, all at once, one forked."""
    start = threading.Barrier(count)

    def in_thread(n: int) -> None:
        start.wait()
        with Session(tel) as s:
            script(s, n, prompt, sql, path)

    async def in_task(n: int, parent: Session) -> None:
        await asyncio.sleep(0)
        with Session(tel, forked_from=parent if n == 1 else None) as s:
            await asyncio.to_thread(start.wait)
            script(s, n, prompt, sql, path)

    async def tasks(numbers: list[int]) -> None:
        with Session(tel) as parent:  # a short-lived parent: ends before its children
            pass
        await asyncio.gather(*(in_task(n, parent) for n in numbers))

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(0, count, 2)]
    for t in threads:
        t.start()
    asyncio.run(tasks(list(range(1, count, 2))))
    for t in threads:
        t.join()


def main(argv: Sequence[str] | None = None) -> int:
    tel = make_telemetry()
    parser = argparse.ArgumentParser(prog=APP, description="An Altimate-like agent CLI.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run agent sessions concurrently")
    p.add_argument("--sessions", type=int, default=2)
    p.add_argument("--prompt", default="explain my model")
    p.add_argument("--sql", default="select 1")
    p.add_argument("--path", default="models/orders.sql")
    p.add_argument("--send-today", action="store_true", help="close today and send now (CI, demos)")
    add_telemetry_command(sub, app=APP)
    args = parser.parse_args(argv)
    if args.command == "run":
        run_sessions(tel, max(2, args.sessions), args.prompt, args.sql, args.path)
        if args.send_today:
            tel.send(timeout=5.0, include_today=True)  # with the bearer token, if signed in
        print(f"{max(2, args.sessions)} sessions done")
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
