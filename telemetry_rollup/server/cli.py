"""``serve``, ``report``, ``prune`` (and the dispatch to ``export``, ``export_cli.py``): argument
parsing and process boundaries, nothing else.

Exit codes: 0 success, 2 usage error or a missing extra, 1 runtime failure; each failure is
ONE line on stderr. FastAPI and uvicorn are imported inside :func:`serve_main` only, so
``report`` and ``prune`` work with just a database driver; a missing extra (an ImportError)
becomes one line naming the extra to install (:func:`missing_extra`). Only the report, and
prune's one line, write to stdout.

SIGTERM and SIGINT end a graceful shutdown and then the process, by that same signal, with
one worker or several (uvicorn re-raises the signal itself only in a single process; its
supervisor of ``--workers N`` returns normally, so :func:`serve_main` re-raises it there).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from telemetry_rollup.server.cli_common import DB_HELP as _DB_HELP
from telemetry_rollup.server.cli_common import PROG, UsageError, missing_extra, open_for
from telemetry_rollup.server.cli_common import Parser as _Parser
from telemetry_rollup.server.cli_common import fail as _fail
from telemetry_rollup.server.config import load_config
from telemetry_rollup.server.report import FORMATS, FORMATTERS, build_report
from telemetry_rollup.server.store import (
    StoreError,
    check_db_url,
    default_db_url,
    sqlite_path_from_url,
)

ENV_DB = "TELEMETRY_ROLLUP_SERVER_DB"  # same names as app.ENV_*, kept here to avoid the import
ENV_CONFIG = "TELEMETRY_ROLLUP_SERVER_CONFIG"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # metrics.MULTIPROC_ENV, likewise


def _serve_parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, description="Run the ingest server (docs/server.md).")
    parser.add_argument("--db", metavar="URL", help=_DB_HELP)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (default: 8787)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="allowlists, limits, dashboard and metrics: .toml (Python 3.11+) or .json"
        " (default: none: every app accepted, no dashboard, no metrics)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    return parser


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind_problem(host: str, port: int) -> str:
    """Why host:port cannot be bound, or "" (checked first so the failure is one line)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve --host {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return ""


def _announce_when_healthy(url: str, stop: threading.Event) -> None:
    """Print the listening URL once /healthz answers (used when uvicorn runs workers)."""
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:  # noqa: S310 - our own http URL
                if response.status == 200:
                    print(f"telemetry-rollup server listening on {url}", file=sys.stderr)
                    return
        except OSError:
            pass
        stop.wait(0.1)


def _missing_directory(url: str, explicit: bool) -> str:
    """Why a SQLite URL given on the command line cannot be used, or "": its directory must exist
    (a typo must not start a server on a new, empty database). The default location is created."""
    if not explicit or not url.startswith("sqlite:"):
        return ""
    parent = sqlite_path_from_url(url).parent
    return "" if parent.is_dir() else f"no directory {parent} for the database (create it first)"


@contextlib.contextmanager
def _signals_seen() -> Iterator[list[int]]:
    """The signals delivered while the block runs, whoever handled them: the interpreter writes
    each one's number to a wakeup file descriptor (main thread only; see module docstring)."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        yield seen
    finally:
        signal.set_wakeup_fd(previous)
        with contextlib.suppress(BlockingIOError):
            seen.extend(os.read(read_fd, 1024))
        os.close(read_fd)
        os.close(write_fd)


def _end_by(sig: int) -> int:
    """End the process by ``sig`` (as a single uvicorn process does after a graceful shutdown),
    so a supervisor sees the same status with one worker or several."""
    sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    signal.raise_signal(sig)
    return 128 + sig  # not reached


def serve_main(argv: list[str], prog: str = f"{PROG} serve") -> int:
    """Run the server until SIGTERM or SIGINT; see the module docstring for exit codes."""
    try:
        args = _serve_parser(prog).parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be 0..65535, not {args.port}")
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        config = load_config(args.config)
    except (UsageError, ValueError) as exc:  # ConfigError is a ValueError
        return _fail(prog, str(exc), 2)
    problem = _missing_directory(url, args.db is not None)
    if problem:
        return _fail(prog, problem, 1)
    try:
        import uvicorn

        from telemetry_rollup.server.app import create_app
        from telemetry_rollup.server.protocol import BACKLOG, MAX_HEAD_BYTES, raise_fd_limit
    except ImportError as exc:
        return _fail(prog, missing_extra(exc), 2)

    raise_fd_limit()  # before the workers start: they inherit it

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        # Privacy: no access log (it would write client addresses and paths), no Server
        # header; X-Forwarded-For only from the proxies the config names ([proxy] trusted),
        # so a local client cannot pretend to be many.
        "access_log": False,
        "proxy_headers": bool(config.trusted_proxies),
        "forwarded_allow_ips": list(config.trusted_proxies) or None,
        "server_header": False,
        "log_level": "warning",
        # Import string, so each worker process can load it (see protocol.py for why): it
        # adds TCP_NODELAY, connection caps and a deadline per request.
        "http": "telemetry_rollup.server.protocol:NoDelayH11Protocol",
        # The limits uvicorn offers: idle keep-alive connections closed after 5 s, a request
        # head of at most 16 KiB, and a shutdown that waits at most 10 s for requests in
        # flight (a slow client cannot keep SIGTERM from ending the process).
        "timeout_keep_alive": 5,
        "backlog": BACKLOG,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "timeout_graceful_shutdown": 10,
    }
    problem = _bind_problem(args.host, args.port)
    if problem:
        return _fail(prog, problem, 1)
    store = open_for(prog, url)
    if isinstance(store, int):
        return store
    # prometheus-client picks its mode from the environment at import: several workers share
    # their figures through files in a directory of this run's own (metrics.py); one process
    # keeps them in memory, whatever the environment it was started from says.
    for name in (MULTIPROC_ENV, MULTIPROC_ENV.lower()):
        os.environ.pop(name, None)
    if args.workers > 1:
        store.close()  # each worker opens its own; this one only migrated and checked access
        os.environ[ENV_DB] = url
        if args.config is not None:
            os.environ[ENV_CONFIG] = str(args.config.resolve())
        else:
            os.environ.pop(ENV_CONFIG, None)
        metrics_dir = tempfile.mkdtemp(prefix="telemetry-rollup-metrics-") if config.metrics is not None else None
        if metrics_dir is not None:
            os.environ[MULTIPROC_ENV] = metrics_dir
        stop = threading.Event()
        watcher = threading.Thread(target=_announce_when_healthy, args=(_url(args.host, args.port), stop), daemon=True)
        watcher.start()
        try:
            with _signals_seen() as seen:
                uvicorn.run(
                    "telemetry_rollup.server.app:app_from_env",
                    factory=True,
                    workers=args.workers,
                    **options,
                )
        except SystemExit as exc:
            return _fail(prog, "server stopped with an error", 1) if exc.code else 0
        finally:
            stop.set()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        # The supervisor stopped its workers gracefully; end as one process would.
        ending = [sig for sig in seen if sig in (signal.SIGTERM, signal.SIGINT)]
        return _end_by(ending[-1]) if ending else 0

    return _serve_single(create_app(store, config), options, prog)


def _serve_single(app: Any, options: dict[str, Any], prog: str) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                host, port = options["host"], options["port"]
                for server in self.servers:
                    for sock in server.sockets:
                        port = sock.getsockname()[1]  # the real port when --port 0
                print(f"telemetry-rollup server listening on {_url(host, port)}", file=sys.stderr)

    server = _Server(uvicorn.Config(app, **options))
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        return _fail(prog, "could not start (is the port in use?)", 1) if exc.code else 0
    except KeyboardInterrupt:
        # SIGINT: uvicorn shut down gracefully, restored Python's handler and re-raised the
        # signal, which that handler turns into this exception; end by the signal instead of a
        # traceback. (SIGTERM's restored handler is the default one: the process has ended.)
        return _end_by(signal.SIGINT)
    return 0 if server.started else _fail(prog, "could not start (is the port in use?)", 1)


def _report_parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, description="Print what the server stored (docs/server.md, The report).")
    parser.add_argument("--db", metavar="URL", help=_DB_HELP)
    parser.add_argument("--app", help="only this app (default: every app)")
    parser.add_argument(
        "--days", type=int, default=30, metavar="N", help="the last N UTC days up to --until (default: 30)"
    )
    parser.add_argument(
        "--format", choices=(*FORMATS, "html"), default="table", help="table, json, csv or html (default: table)"
    )
    parser.add_argument("--since", metavar="DAY", help="first UTC day, YYYY-MM-DD (default: from --days)")
    parser.add_argument("--until", metavar="DAY", help="last UTC day, YYYY-MM-DD (default: today)")
    parser.add_argument(
        "--name",
        help="only counters with this name or matching this glob, with the :ok, :error and :dur counters"
        " that follow them (default: every counter)",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write to this file (default: stdout)")
    return parser


def report_main(argv: list[str], prog: str = f"{PROG} report") -> int:
    """Print the report to stdout (or ``--out``)."""
    from telemetry_rollup.server import dashboard

    try:
        args = _report_parser(prog).parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not 1 <= args.days <= 3660:
            raise UsageError("--days must be 1..3660")
        # The same checks as the dashboard's query parameters, for every format.
        today = datetime.now(timezone.utc).date()
        params = {"app": args.app or "", "days": str(args.days), "since": args.since or "", "until": args.until or ""}
        query = dashboard.parse_query({**params, "name": args.name or ""}, today)
    except dashboard.QueryError as exc:
        # Its messages name the query parameter; here the same names are options.
        return _fail(prog, re.sub(r"\b(since|until|days)\b", r"--\1", str(exc)), 2)
    except (UsageError, ValueError) as exc:
        return _fail(prog, str(exc), 2)
    # Read-only: report never writes, migrates or creates anything (a read-only role or file
    # system is enough), and refuses a schema it does not know.
    store = open_for(prog, url, readonly=True)
    if isinstance(store, int):
        return store
    try:
        if args.format == "html":
            text = dashboard.html_report(store, query)
        else:
            report = build_report(
                store, query.app, args.days, today, since=query.since, until=query.until, name=query.name
            )
            text = FORMATTERS[args.format](report)
    except StoreError as exc:
        return _fail(prog, str(exc), 1)
    finally:
        store.close()
    if args.out is not None:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail(prog, f"cannot write {args.out}: {exc.strerror}", 1)
        return 0
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


#: The server's commands, as ``python -m telemetry_rollup`` and this module name them.
COMMANDS = ("serve", "report", "prune", "export")


def run_command(name: str, argv: list[str], prog: str = PROG) -> int:
    """Run ``serve``, ``report``, ``prune`` or ``export``; a missing extra is one line (exit 2)."""
    try:
        if name == "serve":
            return serve_main(argv, f"{prog} serve")
        if name == "report":
            return report_main(argv, f"{prog} report")
        if name == "prune":
            from telemetry_rollup.server.prune_cli import prune_main

            return prune_main(argv, f"{prog} prune")
        from telemetry_rollup.server.export_cli import export_main

        return export_main(argv, f"{prog} export")
    except ImportError as exc:
        return _fail(f"{prog} {name}", missing_extra(exc), 2)


def main(argv: list[str] | None = None) -> int:
    """``python -m telemetry_rollup.server.cli serve|report|prune|export ...`` (standalone use)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        return _fail("python -m telemetry_rollup.server.cli", "usage: serve|report|prune|export [options]", 2)
    return run_command(args[0], args[1:], "python -m telemetry_rollup.server.cli")


__all__ = ["COMMANDS", "main", "missing_extra", "report_main", "run_command", "serve_main"]

if __name__ == "__main__":
    raise SystemExit(main())
