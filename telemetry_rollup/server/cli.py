"""``serve``, ``report`` and ``prune``: argument parsing and process boundaries, nothing else.

Exit codes: 0 success, 2 usage error, 1 runtime failure; each failure is ONE line on
stderr. FastAPI and uvicorn are imported inside :func:`serve_main` only, so ``report``
works with just a database driver, and a missing ``[server]`` extra surfaces as an
ImportError (raised from ``serve_main``) that the package's CLI turns into an install
hint. Only the report, and prune's one line, write to stdout.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

from telemetry_rollup.server.config import load_config
from telemetry_rollup.server.report import FORMATS, FORMATTERS, build_report
from telemetry_rollup.server.store import MIN_RETENTION_DAYS, StoreError, check_db_url, default_db_url, open_store

ENV_DB = "TELEMETRY_ROLLUP_SERVER_DB"  # same names as app.ENV_*, kept here to avoid the import
ENV_CONFIG = "TELEMETRY_ROLLUP_SERVER_CONFIG"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage plus the error (two lines) and exits; the contract is one line.
        raise UsageError(message)


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def _serve_parser() -> _Parser:
    parser = _Parser(prog="telemetry-rollup serve", description="Run the ingest server.")
    parser.add_argument("--db", help="sqlite:///file.db, sqlite:////abs/file.db or postgresql://…")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--config", type=Path, help="config file (.toml on Python 3.11+, or .json)")
    parser.add_argument("--workers", type=int, default=1)
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


def serve_main(argv: list[str]) -> int:
    """Run the server until interrupted. Raises ImportError when the [server] extra is missing."""
    prog = "telemetry-rollup serve"
    try:
        args = _serve_parser().parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be 0..65535, not {args.port}")
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        config = load_config(args.config)
    except (UsageError, ValueError) as exc:  # ConfigError is a ValueError
        return _fail(prog, str(exc), 2)

    import uvicorn

    from telemetry_rollup.server.app import create_app
    from telemetry_rollup.server.protocol import BACKLOG, MAX_HEAD_BYTES, raise_fd_limit

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
    try:
        store = open_store(url)
    except (StoreError, OSError) as exc:
        return _fail(prog, str(exc), 1)
    if args.workers > 1:
        store.close()  # each worker opens its own; this one only migrated and checked access
        os.environ[ENV_DB] = url
        if args.config is not None:
            os.environ[ENV_CONFIG] = str(args.config.resolve())
        else:
            os.environ.pop(ENV_CONFIG, None)
        stop = threading.Event()
        watcher = threading.Thread(target=_announce_when_healthy, args=(_url(args.host, args.port), stop), daemon=True)
        watcher.start()
        try:
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
        return 0

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
    return 0 if server.started else _fail(prog, "could not start (is the port in use?)", 1)


def _report_parser() -> _Parser:
    parser = _Parser(prog="telemetry-rollup report", description="Print what the server stored.")
    parser.add_argument("--db", help="sqlite:///file.db, sqlite:////abs/file.db or postgresql://…")
    parser.add_argument("--app", help="only this app")
    parser.add_argument("--days", type=int, default=30, help="last N days (UTC), default 30")
    parser.add_argument("--format", choices=(*FORMATS, "html"), default="table")
    parser.add_argument("--since", help="html: first day YYYY-MM-DD (default: from --days)")
    parser.add_argument("--until", help="html: last day YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--name", help="html: only counters matching this name or glob")
    parser.add_argument("--out", type=Path, help="write to this file instead of stdout")
    return parser


def report_main(argv: list[str]) -> int:
    """Print the report to stdout."""
    prog = "telemetry-rollup report"
    try:
        args = _report_parser().parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not 1 <= args.days <= 3660:
            raise UsageError("--days must be 1..3660")
    except (UsageError, ValueError) as exc:
        return _fail(prog, str(exc), 2)
    try:
        # Read-only: report never writes, migrates or creates anything (a read-only role or
        # file system is enough), and refuses a schema it does not know.
        store = open_store(url, readonly=True)
    except (StoreError, OSError) as exc:
        return _fail(prog, str(exc), 1)
    try:
        today = datetime.now(timezone.utc).date()
        if args.format == "html":
            text = _html_report(store, args, today)
        else:
            text = FORMATTERS[args.format](build_report(store, args.app, args.days, today))
    except StoreError as exc:
        return _fail(prog, str(exc), 1)
    except ValueError as exc:  # dashboard.QueryError
        return _fail(prog, str(exc), 2)
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


def _html_report(store: Any, args: argparse.Namespace, today: Any) -> str:
    from telemetry_rollup.server import dashboard

    params = {"app": args.app or "", "days": str(args.days), "since": args.since or "", "until": args.until or ""}
    query = dashboard.parse_query({**params, "name": args.name or ""}, today)
    return dashboard.html_report(store, query)


def _prune_parser() -> _Parser:
    parser = _Parser(
        prog="telemetry-rollup prune",
        description="Delete raw rows older than DAYS (UTC); the daily totals the report and dashboard read are kept.",
    )
    parser.add_argument("--db", help="sqlite:///file.db, sqlite:////abs/file.db or postgresql://…")
    parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help=f"at least {MIN_RETENTION_DAYS}")
    return parser


def prune_main(argv: list[str]) -> int:
    """Delete old raw rows; print one line saying how many machine-days were pruned."""
    prog = "telemetry-rollup prune"
    try:
        args = _prune_parser().parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not MIN_RETENTION_DAYS <= args.older_than <= 100_000:
            raise UsageError(f"--older-than must be {MIN_RETENTION_DAYS}..100000 (reports may arrive 35 days late)")
    except (UsageError, ValueError) as exc:
        return _fail(prog, str(exc), 2)
    today = datetime.now(timezone.utc).date()
    try:
        store = open_store(url, create=False)
    except (StoreError, OSError) as exc:
        return _fail(prog, str(exc), 1)
    try:
        pruned = store.prune(args.older_than, today)
    except StoreError as exc:
        return _fail(prog, str(exc), 1)
    finally:
        store.close()
    before = (today - timedelta(days=args.older_than)).isoformat()
    print(f"pruned the raw rows of {pruned} machine-days before {before} (UTC); daily totals kept")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m telemetry_rollup.server.cli serve|report|prune ...`` (standalone use)."""
    args = sys.argv[1:] if argv is None else argv
    commands = {"serve": serve_main, "report": report_main, "prune": prune_main}
    if not args or args[0] not in commands:
        return _fail("telemetry-rollup.server", "usage: serve|report|prune [options]", 2)
    try:
        return commands[args[0]](args[1:])
    except ImportError as exc:
        return _fail("telemetry-rollup", f"{exc.name or exc}: pip install 'telemetry-rollup[server]'", 1)


__all__ = ["main", "prune_main", "report_main", "serve_main"]

if __name__ == "__main__":
    raise SystemExit(main())
