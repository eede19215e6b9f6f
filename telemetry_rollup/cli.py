"""``python -m telemetry_rollup``: every command. The only module that prints.

Errors are one line on stderr and a non-zero exit (2 for usage), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

# The grammar and what show/view present live below this module (no cycle with _view); they
# are re-exported here, where tools that embed the commands have always found them.
from ._cli_args import UsageError, add_commands, build_parser
from ._show import REDACTED_NOTE, app_stores_for, one_store, show_bodies, shown_id


class _Escaped:
    """A text stream that writes through ``_format.printable``: whatever a command prints (values
    read from disk, config files or the environment included) cannot drive the terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from ._format import printable

        return self._stream.write(printable(text))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _escaped(stream: IO[str]) -> IO[str]:
    return stream if isinstance(stream, _Escaped) else _Escaped(stream)  # type: ignore[return-value]


def add_telemetry_command(
    parser_or_subparsers: Any,
    app: str,
    *,
    name: str = "telemetry",
    help: str | None = None,
    aliases: dict[str, str] | None = None,
) -> argparse.ArgumentParser:
    """Add ``<tool> telemetry status|on|off|local|show|reset-id|flush`` to a host tool's parser.

    ``aliases`` gives the mode commands other names, e.g. ``{"enable": "on", "disable": "off"}``
    for a tool whose policy says ``tool telemetry enable|disable``.

    ``parser_or_subparsers`` is the host's ``ArgumentParser`` (its subparsers are found or made)
    or the action ``add_subparsers()`` returned. The parsed namespace gets ``func``: call
    ``args.func(args)`` to run the command; it returns the exit code and prints to stdout/stderr.
    """
    sub = parser_or_subparsers
    if isinstance(sub, argparse.ArgumentParser):
        existing = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        sub = existing[0] if existing else sub.add_subparsers(dest="command")
    prog_parent = sub._prog_prefix if hasattr(sub, "_prog_prefix") else app
    tp = sub.add_parser(name, help=help or f"see and control what {app} records about its use")
    nested = tp.add_subparsers(dest="telemetry_command", metavar="COMMAND")
    nested.required = True
    bad = {k: v for k, v in (aliases or {}).items() if v not in ("on", "local", "off")}
    if bad:
        raise ValueError(f"aliases may name only on, local or off: {bad}")
    add_commands(nested, app=app, aliases=aliases)

    def run(args: argparse.Namespace, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
        ns = argparse.Namespace(**vars(args))
        ns.command = (aliases or {}).get(ns.telemetry_command, ns.telemetry_command)
        ns.app = app
        return _run_parsed(ns, f"{prog_parent} {name}", stdout or sys.stdout, stderr or sys.stderr)

    tp.set_defaults(func=run)
    return tp  # type: ignore[no-any-return]


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
    out = _escaped(stdout or sys.stdout)
    err = _escaped(stderr or sys.stderr)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("serve", "report", "prune", "export") and app is None:
        return _server_command(args_list[0], args_list[1:], err)
    if args_list and args_list[0] == "demo" and app is None:
        from ._demo import demo_main

        return demo_main(args_list[1:], out, err)
    try:
        parser = build_parser(prog, app)
        args = _parse(parser, args_list, out)
        if args is None:
            return 0
        if app is not None:
            args.app = app
    except UsageError as exc:
        err.write(f"{prog}: {exc}\n")
        return 2
    return _run_parsed(args, prog, out, err)


def _parse(parser: argparse.ArgumentParser, argv: list[str], out: IO[str]) -> argparse.Namespace | None:
    """Parse; ``--help`` prints to ``out`` (not sys.stdout) and yields None."""
    import contextlib

    try:
        with contextlib.redirect_stdout(out):
            return parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            return None
        raise UsageError("invalid arguments") from None


def _run_parsed(args: argparse.Namespace, prog: str, out: IO[str], err: IO[str]) -> int:
    from . import _telemetry
    from ._log import setup_debug

    # Looking at or controlling telemetry never sends as a side effect: a host tool whose run is
    # its own telemetry command (its exit hook included) starts no automatic send.
    _telemetry.NO_AUTOSEND = True
    out, err = _escaped(out), _escaped(err)
    try:
        setup_debug()
        return int(_dispatch(args, out, err))
    except UsageError as exc:
        err.write(f"{prog}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback
        import logging

        logging.getLogger("telemetry_rollup").debug("%s failed", args.command, exc_info=True)
        err.write(f"{prog}: {type(exc).__name__}: {exc}\n")
        return 1


def _dispatch(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    handlers = {
        "flush": cmd_flush,
        "status": cmd_status,
        "on": cmd_mode,
        "local": cmd_mode,
        "off": cmd_mode,
        "show": cmd_show,
        "reset-id": cmd_reset_id,
        "view": cmd_view,
    }
    handler = handlers.get(args.command)
    if handler is None:
        raise UsageError(f"unknown command {args.command}")
    return handler(args, out, err)


def cmd_status(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import time

    from . import _paths
    from ._format import status_text
    from ._status import status_all

    stores = app_stores_for(args.app)
    doc = status_all(stores, _paths.data_root())
    if args.json:
        out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return 0
    if not doc["apps"]:
        out.write(f"No app has recorded anything under {doc['data_root']}\n")
        return 0
    now = time.time()
    out.write("\n\n".join(status_text(st, now) for st in doc["apps"]) + "\n")
    return 0


def _override_note(store: Any, decision: Any, mode: str) -> str:
    if decision.source in ("stored", "default") or decision.mode == mode:
        return ""
    return (
        f"note: {decision.source} is set in this environment and overrides the stored choice:"
        f" {store.app} is {decision.mode} here until it is unset.\n"
    )


def cmd_mode(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ._control import set_mode

    mode = args.command
    if mode == "off":
        if getattr(args, "all", False):
            if args.app is not None:
                raise UsageError("give --app or --all, not both")
            stores = app_stores_for(None)
        elif args.app is None:
            raise UsageError("--app APP or --all is required")
        else:
            stores = app_stores_for(args.app)
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
    else:
        stores = [one_store(args.app)]
    code = 0
    if not stores:
        out.write("No app has recorded anything on this machine: nothing to switch off.\n")
    for store in stores:
        res = set_mode(
            store,
            mode,
            keep_remote=getattr(args, "keep_remote", False),
            timeout=getattr(args, "timeout", 5.0),
        )
        out.write(f"{res.app}: telemetry is {mode} (stored in {store.mode_file}).\n")
        if mode == "off":
            if res.busy:
                err.write(
                    f"{res.app}: another process holds its lock; nothing more will be written, but its data"
                    " was not deleted yet: run the command again\n"
                )
                code = 1
            elif res.deleted:
                what = ", ".join(
                    f"{n} ({'a page view wrote' if os.path.isabs(n) else _WHAT.get(n, 'file')})" for n in res.deleted
                )
                out.write(f"{res.app}: deleted from {store.dir}: {what}\n")
            else:
                out.write(f"{res.app}: nothing to delete.\n")
            if res.forget:
                out.write(f"{res.app}: deletion request for the old machine id: {res.forget}\n")
        elif mode == "on" and shown_id(store) is None:
            out.write(f"{res.app}: a new random machine id will be made at the next send.\n")
        out.write(_override_note(store, res.effective, mode))
    return code


_WHAT = {
    "buffer.jsonl": "counts not yet rolled up",
    "spill": "counts written aside",
    "outbox": "reports waiting to be sent",
    "machine_key": "the machine's secret key, and so its id",
    "machine_id": "the random machine id",
    "state.json": "delivery history",
    "config.json": "the app's settings",
    "notice": "notice shown",
    "views": "where view wrote its pages",
    "forget.json": "pending deletion request",
    "buffer.jsonl.lock": "lock",
    "sender.lock": "lock",
}


def cmd_reset_id(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ._appfiles import decide, read
    from ._control import reset_id

    store = one_store(args.app)
    if not store.exists():
        err.write(f"{store.app} has recorded nothing on this machine: it has no machine id\n")
        return 1
    files = read(store)
    if files.stored == "off" or decide(files, os.environ).mode == "off":
        err.write(f"{store.app}: telemetry is off: no machine id is kept\n")
        return 1
    old = shown_id(store)
    new, forget = reset_id(store)
    out.write(f"{store.app}: machine id {old or '(none)'} -> {new}; pending reports will be sent under it.\n")
    if forget:
        out.write(f"{store.app}: deletion request for the old machine id: {forget}\n")
    return 0


def cmd_show(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    for store in app_stores_for(args.app):
        bodies, notes = show_bodies(store, os.environ, args.include_today)
        _emit_show(args, out, err, store.app, bodies, notes)
    return 0


def cmd_view(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ._view import write_view

    path, opened = write_view(args.app, args.out, open_browser=not args.no_open)
    out.write(f"{path}\n" if not opened else f"{path} (opened in your browser)\n")
    return 0


def _emit_show(
    args: argparse.Namespace,
    out: IO[str],
    err: IO[str],
    app: str,
    bodies: list[tuple[str, str | None, bytes]],
    notes: list[str],
) -> None:
    from ._format import show_text

    if bodies:
        notes = [*notes, REDACTED_NOTE]
    if args.raw:
        for _, _, body in bodies:
            out.write(body.decode("utf-8") + "\n")
        for n in notes:
            err.write(f"{app}: {n}\n")
        return
    out.write(show_text(app, bodies, notes) + "\n")


#: ``flush``'s exit code when the receiver refused reports for good (a final 4xx: they were deleted
#: and are counted as rejected by ``status``); 1 means something was kept for a later attempt.
EXIT_REJECTED = 3


def cmd_flush(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import time

    from ._appfiles import read
    from ._due import auto_due

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    code = 0
    for store in app_stores_for(args.app):
        if not store.exists():
            continue
        # The sender, the deletion request and the output are imported only when there is work
        # for them: `flush --if-due` with nothing due (a cron job's usual run) loads none of them.
        if os.path.lexists(store.forget_file):
            from ._control import retry_forget
            from ._format import forget_text

            fres = retry_forget(store, timeout=min(5.0, args.timeout), force=not args.if_due)
            if not args.quiet and (fres.acknowledged or fres.kept or fres.expired):
                out.write(forget_text(fres) + "\n")
            if fres.kept and not args.if_due:
                code = max(code, 1)
        files = read(store)  # once for the command; run() reads it again under the sender lock
        if args.if_due:
            interval = files.config.get("send_interval", 3600.0)
            if not isinstance(interval, (int, float)) or not auto_due(store, float(interval), time.time()):
                continue
        from ._format import flush_text
        from ._sender import run

        res = run(store, timeout=args.timeout, include_today=args.include_today, force=not args.if_due, files=files)
        if res.sent is not None and res.sent.rejected:
            code = max(code, EXIT_REJECTED)
        elif res.sent is not None and res.sent.kept:
            code = max(code, 1)
        if not args.quiet:
            out.write(flush_text(res) + "\n")
    return code


def _server_command(name: str, argv: list[str], err: IO[str]) -> int:
    """``serve``, ``report``, ``prune`` and ``export``: the server package parses and prints for itself;
    a missing extra is one line naming it (exit 2)."""
    try:
        from .server import cli as server_cli
    except ImportError:
        err.write(f"python -m telemetry_rollup {name}: install the [server] extra, pip install '.[server]'\n")
        return 2
    return server_cli.run_command(name, argv)


def entry() -> None:
    """Console script ``telemetry-rollup``."""
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
    os._exit(0)
