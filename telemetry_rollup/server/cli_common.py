"""What the server's commands share: one-line usage errors, the missing-extra line, opening the
store for a command (its errors as exit codes), ``--db``'s help.

Imported by ``cli`` (``serve``, ``report``), ``prune_cli`` and ``export_cli``, and importing
none of them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from telemetry_rollup.server.store import SQLStore


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage plus the error (two lines) and exits; the contract is one line.
        raise UsageError(message)


PROG = "python -m telemetry_rollup"

#: Which extra brings which top-level module (pyproject.toml's optional dependencies).
_EXTRAS = {
    "psycopg": "postgres",
    "psycopg_binary": "postgres",
    "fastapi": "server",
    "uvicorn": "server",
    "starlette": "server",
    "pydantic": "server",
    "anyio": "server",
    "prometheus_client": "server",
    "opentelemetry": "otlp",
    "google": "otlp",
}


def missing_extra(exc: ImportError) -> str:
    """One line for an ImportError: the missing module and the extra that brings it."""
    module = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(module, "server")
    what = f"{module} is not installed" if module else f"cannot import: {exc}"
    return (
        f"{what}: install the [{extra}] extra, pip install '.[{extra}]' from a checkout"
        f" (pip install 'telemetry-rollup[{extra}]' once published)"
    )


def fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def open_for(prog: str, url: str, *, create: bool = True, readonly: bool = False) -> SQLStore | int:
    """``open_store(url, **kwargs)`` for a command, or, with one line on stderr, its exit code: 2
    when the URL needs an extra that is not installed (psycopg for PostgreSQL), 1 when the
    database cannot be opened. Callers test ``isinstance(result, int)``."""
    from telemetry_rollup.server.store import StoreError, open_store

    try:
        return open_store(url, create=create, readonly=readonly)
    except ImportError as exc:
        return fail(prog, missing_extra(exc), 2)
    except (StoreError, OSError) as exc:
        return fail(prog, str(exc), 1)


DB_HELP = (
    "database URL: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user:pw@host/db"
    " (default: server.db in the user data directory)"
)


__all__ = ["DB_HELP", "PROG", "Parser", "UsageError", "fail", "missing_extra", "open_for"]
