"""``python -m telemetry_rollup.server [--db URL] [--port N] ...`` runs the ingest server."""

from __future__ import annotations

import sys

from telemetry_rollup.server.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve", *sys.argv[1:]]))
