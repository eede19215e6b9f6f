"""``acme``: a complete example tool that embeds telemetry_rollup and offers ``acme telemetry ...``.

Run it::

    python examples/acme_cli.py build
    python examples/acme_cli.py telemetry status
    python examples/acme_cli.py telemetry show
    python examples/acme_cli.py telemetry off

``ACME_ENDPOINT`` overrides the receiver URL (the tests point it at a server on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import telemetry_rollup as tr
from telemetry_rollup.cli import add_telemetry_command


def cmd_build(args: argparse.Namespace) -> int:
    tr.count("build")  # never raises, never blocks, never prints
    print("building...")
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    tr.count("lint")
    print("linting...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    tr.configure(
        "acme",
        endpoint=os.environ.get("ACME_ENDPOINT", "https://telemetry.example.com/v1/rollups"),
        app_version="1.4.0",
        allow=["build", "lint"],  # anything else counts under _denied
        notice_url="https://example.com/acme/TELEMETRY.md",
    )
    parser = argparse.ArgumentParser(prog="acme", description="An example tool.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the project").set_defaults(func=cmd_build)
    sub.add_parser("lint", help="lint the project").set_defaults(func=cmd_lint)
    # One call: acme telemetry status|on|off|local|show|reset-id|flush, all for app "acme".
    add_telemetry_command(sub, app="acme")
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
