"""The command line's grammar: every per-app command and its options (``cli`` runs them).

Below ``cli``, ``_show`` and ``_view``: it imports no module of the package.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser(prog: str = "python -m telemetry_rollup", app: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Inspect, control and deliver telemetry_rollup counts.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_commands(sub, app=app)
    return p


def add_commands(sub: Any, app: str | None = None, aliases: dict[str, str] | None = None) -> None:
    """Add every per-app command to a subparsers action. With ``app`` (a host tool's own
    ``telemetry`` command) there is no ``--app``: every command applies to that app.
    ``aliases`` maps extra names to commands (``{"enable": "on"}``)."""
    also: dict[str, list[str]] = {}
    for alias, target in (aliases or {}).items():
        also.setdefault(target, []).append(alias)

    def app_option(p: argparse.ArgumentParser, what: str, required: bool = False) -> None:
        if app is None:
            p.add_argument("--app", required=required, help=what)

    st = sub.add_parser("status", help="what is recorded and what would be sent, per app")
    app_option(st, "only this app (default: every app on this machine)")
    st.add_argument("--json", action="store_true", help="the stable JSON document (TELEMETRY.md)")

    for mode, text in (
        ("on", "store the choice: count and send (an explicit on is consent)"),
        ("local", "store the choice: count on this machine, send nothing"),
        ("off", "store the choice: count nothing; delete everything and ask the receiver to forget"),
    ):
        p = sub.add_parser(mode, help=text, aliases=also.get(mode, []))
        app_option(p, "the app", required=(app is None and mode != "off"))
        if mode == "off":
            if app is None:
                p.add_argument("--all", action="store_true", help="every app on this machine")
            p.add_argument("--keep-remote", action="store_true", help="do not send the deletion request")
            p.add_argument("--timeout", type=float, default=5.0, help="seconds for the deletion request (default 5)")

    sh = sub.add_parser("show", help="print exactly the request bodies the next send would POST, without sending")
    app_option(sh, "only this app (default: every app on this machine)")
    sh.add_argument(
        "--raw",
        action="store_true",
        help="the bodies as sent, one per line, nothing else, but the machine_key proof redacted",
    )
    sh.add_argument(
        "--include-today",
        action="store_true",
        help="also today's counts, as flush --include-today would send them (changes nothing)",
    )

    v = sub.add_parser("view", help="write a local HTML page of what is recorded and would be sent, and open it")
    app_option(v, "only this app (default: every app on this machine)")
    v.add_argument("--out", help="the HTML file to write (default: a new file in the temp directory)")
    v.add_argument("--no-open", action="store_true", help="only write the file and print its path")

    r = sub.add_parser("reset-id", help="a new machine id; pending reports go out under it")
    app_option(r, "the app", required=True)

    f = sub.add_parser("flush", help="recover, roll up and send the due reports (and deletion requests)")
    app_option(f, "only this app (default: every app on this machine)")
    f.add_argument("--timeout", type=float, default=10.0, help="seconds for the whole run, per app (default 10)")
    f.add_argument("--if-due", action="store_true", help="automatic run: respect back-off and the send interval")
    f.add_argument("--include-today", action="store_true", help="also close and send today's counts (CI, containers)")
    f.add_argument("--quiet", action="store_true", help="print nothing (the exit code still tells)")
    if app is None:
        s = sub.add_parser(
            "serve", help="run the reference ingest server (extra: telemetry-rollup[server])", add_help=False
        )
        s.add_argument("args", nargs=argparse.REMAINDER)
        rp = sub.add_parser("report", help="usage report from the server's database", add_help=False)
        rp.add_argument("args", nargs=argparse.REMAINDER)
        pr = sub.add_parser("prune", help="delete the server's old raw rows, keep its daily totals", add_help=False)
        pr.add_argument("args", nargs=argparse.REMAINDER)
        ex = sub.add_parser("export", help="send the server's daily totals to an OTLP endpoint", add_help=False)
        ex.add_argument("args", nargs=argparse.REMAINDER)
        sub.add_parser("demo", help="end-to-end demo in a throwaway data root (needs the server extra)")
