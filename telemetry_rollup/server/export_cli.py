"""``python -m telemetry_rollup export --otlp URL``: argument parsing and the run, nothing else.

Exit codes as ``serve`` and ``report``: 0 done (nothing new included), 2 usage error or the
``[otlp]`` extra missing, 1 runtime failure (database, endpoint, another export running); each
failure is one line on stderr. The summary goes to stdout; counts that arrived after their day
was sent are one line each on stderr (exit 0: what was sent stays right, it is not complete).
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from telemetry_rollup.server.cli_common import DB_HELP as _DB_HELP
from telemetry_rollup.server.cli_common import Parser as _Parser
from telemetry_rollup.server.cli_common import UsageError, missing_extra, open_for
from telemetry_rollup.server.cli_common import fail as _fail
from telemetry_rollup.server.export import (
    CLOSED_AFTER_DAYS,
    AppDay,
    ExportBusy,
    Marks,
    endpoint_key,
    last_closed_day,
    plan,
    summary,
)
from telemetry_rollup.server.store import StoreError, check_db_url, default_db_url

FIRST_DAY = "2000-01-01"  # as the dashboard's: no day before it is meaningful here
#: The days for which reports may still arrive, and so counts after their day was sent.
OPEN_DAYS = CLOSED_AFTER_DAYS - 1


def _parser(prog: str) -> _Parser:
    parser = _Parser(
        prog=prog,
        description="Send the server's daily totals to an OpenTelemetry (OTLP/HTTP) endpoint, each day once"
        " (docs/server.md, Rollups out over OTLP).",
    )
    parser.add_argument(
        "--otlp",
        required=True,
        metavar="URL",
        help="the endpoint: http(s)://host:4318 (then /v1/metrics is added) or the full metrics URL (required)",
    )
    parser.add_argument("--db", metavar="URL", help=_DB_HELP)
    parser.add_argument("--app", help="only this app (default: every app)")
    parser.add_argument(
        "--since", metavar="DAY", help="first UTC day to consider, YYYY-MM-DD (default: the first stored)"
    )
    parser.add_argument(
        "--settle",
        type=int,
        default=CLOSED_AFTER_DAYS,
        metavar="DAYS",
        help=f"send a day once it is this many days old (default: {CLOSED_AFTER_DAYS}, when the server no longer"
        " accepts reports for it; fewer: sooner, but later reports for a sent day are never sent)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per request, retries included (default: 10)"
    )
    return parser


def _metrics_url(url: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT's rule: a URL without a path gets the signal's path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--otlp must be an http:// or https:// URL")
    return url.rstrip("/") + "/v1/metrics" if parts.path in ("", "/") else url


def _day(text: str, what: str) -> str:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} must be a date YYYY-MM-DD") from None
    if value.isoformat() < FIRST_DAY:
        raise UsageError(f"{what} must be a date from {FIRST_DAY} on")
    return value.isoformat()


def export_main(argv: list[str], prog: str = "python -m telemetry_rollup export") -> int:
    """Send what is due; see the module docstring for exit codes."""
    try:
        args = _parser(prog).parse_args(argv)
        url = _metrics_url(args.otlp)
        db = args.db or default_db_url()
        check_db_url(db)
        since = _day(args.since, "--since") if args.since else FIRST_DAY
        if not 0 <= args.settle <= 3660:
            raise UsageError("--settle must be 0..3660")
        if not 0 < args.timeout <= 600:
            raise UsageError("--timeout must be more than 0 and at most 600 seconds")
    except (UsageError, ValueError) as exc:
        return _fail(prog, str(exc), 2)
    try:
        from telemetry_rollup.server.otlp import Sender
    except ImportError as exc:
        return _fail(prog, missing_extra(exc), 2)
    store = open_for(prog, db, create=False)
    if isinstance(store, int):
        return store
    sender = Sender(url, args.timeout)
    sent: list[AppDay] = []
    try:
        marks = Marks(store, endpoint_key(url))
        marks.claim(time.time())
        try:
            today = datetime.now(timezone.utc).date()
            until = last_closed_day(today, args.settle)
            todo, arrived_late = plan(store, marks, args.app, since, until, (today - timedelta(OPEN_DAYS)).isoformat())
            for item in todo:
                problem = sender.send(item)
                if problem:
                    print(summary(sent), file=sys.stdout)
                    return _fail(prog, f"{item.app} {item.day} not sent: {problem}", 1)
                marks.mark(item, time.time())
                sent.append(item)
        finally:
            marks.release()
    except ExportBusy as exc:
        return _fail(prog, str(exc), 1)
    except StoreError as exc:
        return _fail(prog, str(exc), 1)
    finally:
        sender.close()
        store.close()
    for (app, day), n in arrived_late.items():
        note = f"{app} {day}: {n} counts arrived after the day was sent (not sent; see --settle)"
        print(f"{prog}: {note}", file=sys.stderr)
    print(summary(sent) if sent or todo else f"{summary(sent)}: days up to {until} are sent")
    return 0


__all__ = ["export_main"]
