"""``python -m telemetry_rollup``: every command. The only module that prints.

Errors are one line on stderr and a non-zero exit (2 for usage), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, Any


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # type: ignore[name-defined]  # noqa: F821
        raise UsageError(message)


def build_parser(prog: str = "python -m telemetry_rollup", app: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Inspect, control and deliver telemetry_rollup counts.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_commands(sub, app=app)
    return p


def add_commands(sub: Any, app: str | None = None) -> None:
    f = sub.add_parser("flush", help="recover, roll up and send the due reports")
    if app is None:
        f.add_argument("--app", help="only this app (default: every app on this machine)")
    f.add_argument("--timeout", type=float, default=10.0, help="seconds for the whole run, per app (default 10)")
    f.add_argument("--if-due", action="store_true", help="automatic run: respect back-off and the send interval")
    f.add_argument("--include-today", action="store_true", help="also close and send today's counts (CI, containers)")
    f.add_argument("--quiet", action="store_true", help="print nothing")
    if app is None:
        s = sub.add_parser(
            "serve", help="run the reference ingest server (extra: telemetry-rollup[server])", add_help=False
        )
        s.add_argument("args", nargs=argparse.REMAINDER)
        r = sub.add_parser("report", help="usage report from the server's database", add_help=False)
        r.add_argument("args", nargs=argparse.REMAINDER)
        sub.add_parser("demo", help="end-to-end demo in a throwaway data root (needs the server extra)")


def main(
    argv: Sequence[str] | None = None,
    *,
    app: str | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    prog: str = "python -m telemetry_rollup",
) -> int:
    """Run one command; returns the exit code. Prints only to ``stdout``/``stderr``.

    With ``app`` (a host tool's own ``telemetry`` command) every command applies to that app.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("serve", "report") and app is None:
        return _server_command(args_list[0], args_list[1:], err)
    if args_list and args_list[0] == "demo" and app is None:
        from ._demo import demo_main

        return demo_main(args_list[1:], out, err)
    try:
        args = build_parser(prog, app).parse_args(args_list)
        if app is not None:
            args.app = app
        return int(_dispatch(args, out, err))
    except UsageError as exc:
        err.write(f"{prog}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback
        err.write(f"{prog}: {type(exc).__name__}: {exc}\n")
        return 1


def _dispatch(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.command == "flush":
        return cmd_flush(args, out, err)
    raise UsageError(f"unknown command {args.command}")


def _stores(app: str | None) -> list[AppStore]:  # type: ignore[name-defined]  # noqa: F821
    from . import _paths
    from ._names import is_name
    from ._store import AppStore, app_stores

    root = _paths.data_root()
    if app is not None:
        if not is_name(app):
            raise UsageError(f"invalid app name {app!r}")
        return [AppStore(root / app)]
    return list(app_stores(root))


def cmd_flush(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import time

    from ._sender import auto_due, run

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    code = 0
    for store in _stores(args.app):
        if not store.exists():
            continue
        if args.if_due:
            interval = store.config().get("send_interval", 3600.0)
            if not isinstance(interval, (int, float)) or not auto_due(store, float(interval), time.time()):
                continue
        res = run(store, timeout=args.timeout, include_today=args.include_today, force=not args.if_due)
        if res.sent is not None and res.sent.kept:
            code = 1
        if not args.quiet:
            out.write(_describe(res) + "\n")
    return code


def _describe(res: RunResult) -> str:  # type: ignore[name-defined]  # noqa: F821
    parts = [f"{res.app}: mode {res.mode}"]
    if res.built is not None and res.built.new_reports:
        parts.append(f"{res.built.new_reports} new report(s)")
    if res.sent is not None:
        s = res.sent
        parts.append(f"sent {s.sent}, kept {s.kept}, rejected {s.rejected}")
        if s.outcome is not None and s.outcome.kind != "sent":
            parts.append(f"({s.outcome.detail})")
    elif res.skipped:
        parts.append(f"nothing sent: {res.skipped}")
    return "; ".join(parts)


def _server_command(name: str, argv: list[str], err: IO[str]) -> int:
    try:
        from .server import cli as server_cli
    except ImportError:
        err.write("telemetry_rollup: the server is an extra: pip install 'telemetry-rollup[server]'\n")
        return 2
    try:
        return int(server_cli.serve_main(argv) if name == "serve" else server_cli.report_main(argv))
    except ImportError:
        err.write("telemetry_rollup: the server is an extra: pip install 'telemetry-rollup[server]'\n")
        return 2


def entry() -> None:
    """Console script ``telemetry-rollup``."""
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
    os._exit(0)
