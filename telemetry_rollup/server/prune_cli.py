"""``python -m telemetry_rollup prune --older-than DAYS``: argument parsing and the run.

Exit codes as ``report``'s: 0 done, 2 usage error, 1 runtime failure (one line on stderr); the
one line saying what was pruned goes to stdout. It needs only the database driver.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from telemetry_rollup.server.cli_common import DB_HELP, PROG, Parser, UsageError, fail, open_for
from telemetry_rollup.server.store import MIN_RETENTION_DAYS, StoreError, check_db_url, default_db_url


def prune_parser(prog: str) -> Parser:
    parser = Parser(
        prog=prog,
        description="Delete raw rows older than DAYS (UTC); the daily totals the report and dashboard read are kept.",
    )
    parser.add_argument("--db", metavar="URL", help=DB_HELP)
    parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help=f"at least {MIN_RETENTION_DAYS}")
    return parser


def prune_main(argv: list[str], prog: str = f"{PROG} prune") -> int:
    """Delete old raw rows; print one line saying how many machine-days were pruned."""
    try:
        args = prune_parser(prog).parse_args(argv)
        url = args.db or default_db_url()
        check_db_url(url)
        if not MIN_RETENTION_DAYS <= args.older_than <= 100_000:
            raise UsageError(f"--older-than must be {MIN_RETENTION_DAYS}..100000 (reports may arrive 35 days late)")
    except (UsageError, ValueError) as exc:
        return fail(prog, str(exc), 2)
    today = datetime.now(timezone.utc).date()
    store = open_for(prog, url, create=False)
    if isinstance(store, int):
        return store
    try:
        pruned = store.prune(args.older_than, today)
    except StoreError as exc:
        return fail(prog, str(exc), 1)
    finally:
        store.close()
    before = (today - timedelta(days=args.older_than)).isoformat()
    print(f"pruned the raw rows of {pruned} machine-days before {before} (UTC); daily totals kept")
    return 0


__all__ = ["prune_main"]
