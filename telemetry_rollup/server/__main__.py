"""``python -m telemetry_rollup.server [--db URL] [--port N] ...`` runs the ingest server."""

from __future__ import annotations

import sys

from telemetry_rollup.server.cli import missing_extra, serve_main

if __name__ == "__main__":
    prog = "python -m telemetry_rollup.server"
    try:
        code = serve_main(sys.argv[1:], prog)
    except ImportError as exc:
        print(f"{prog}: {missing_extra(exc)}", file=sys.stderr)
        code = 2
    raise SystemExit(code)
