"""``yourcli``: the generic "CLI Telemetry Policy" (seed 003) rebuilt on telemetry_rollup.

The policy promises, per command execution: the command, its duration, its status, a sanitized
error code, OS/arch, interactive or not, the CLI version, an anonymous installation id. Here
they arrive as daily rollups instead of one event per command:

=================  ===============================================================
policy field       rollup form
=================  ===============================================================
command            ``cmd:<command>`` (how many runs that day)
duration_ms        ``cmd:<command>:dur:<bucket>`` (lt10ms ... ge1m)
status             ``cmd:<command>:ok`` / ``cmd:<command>:error``
error_code         ``cmd:<command>:error:<code>`` (codes from a fixed list)
os_arch            the payload's ``os`` and ``arch``
is_interactive     ``_run:tty`` / ``_run:script`` (one per process: one per command)
cli_version        the payload's ``app_version``
installation_id    the payload's ``machine_id`` (random, resettable: ``telemetry reset-id``)
event_version      the payload's ``schema``
=================  ===============================================================

Never arguments, flags, environment variables, messages, paths or file contents. Control:
``yourcli telemetry disable|enable`` (also ``status``, ``show``), ``YOURCLI_TELEMETRY_OPT_OUT=1``
for one run, ``DO_NOT_TRACK=1``. A one-time notice on stderr before anything is sent.

Run it::

    python examples/cli_policy/yourcli.py build --manifest app.yaml
    python examples/cli_policy/yourcli.py telemetry disable
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import telemetry_rollup as tr
from telemetry_rollup.cli import add_telemetry_command

APP = "yourcli"
NOTICE = (
    "yourcli collects anonymous usage data (command, duration, status, error code, OS/arch, "
    "interactive or not) as daily totals; never arguments, paths or messages. "
    "Disable: `yourcli telemetry disable` or YOURCLI_TELEMETRY_OPT_OUT=1."
)


class CliError(Exception):
    """A failure with a sanitized, high-level code (the message stays on this machine)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def cmd_build(args: argparse.Namespace) -> None:
    if not args.manifest.endswith((".yaml", ".yml")):
        raise CliError("invalid_manifest", f"cannot read manifest {args.manifest}")
    print(f"built from {args.manifest}")


def cmd_deploy(args: argparse.Namespace) -> None:
    if args.target.startswith("prod") and not args.yes:
        raise CliError("confirmation_required", f"deploying to {args.target} needs --yes")
    print(f"deployed to {args.target}")


def setup() -> None:
    if os.environ.get("YOURCLI_TELEMETRY_OPT_OUT", "").strip() not in ("", "0"):
        return  # this run only: nothing recorded (the stored choice is untouched)
    tr.configure(
        APP,
        endpoint=os.environ.get("YOURCLI_TELEMETRY_ENDPOINT", "https://telemetry.your-platform.example/v1/rollups"),
        app_version="0.2.1",
        allow=["cmd:*"],
        notice=NOTICE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    setup()
    parser = argparse.ArgumentParser(prog=APP)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build")
    p.add_argument("--manifest", default="app.yaml")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("deploy")
    p.add_argument("target")
    p.add_argument("--yes", action="store_true")
    p.set_defaults(func=cmd_deploy)
    add_telemetry_command(sub, app=APP, aliases={"enable": "on", "disable": "off"})
    args = parser.parse_args(argv)
    if args.command == "telemetry":
        return int(args.func(args))
    with tr.timed(f"cmd:{args.command}") as t:  # count, status, duration bucket
        try:
            args.func(args)
        except CliError as exc:
            t.error(exc.code)  # the sanitized code; the message is shown to the user only
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
