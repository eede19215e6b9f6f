"""PostgreSQL storage through psycopg 3 (extra ``telemetry-rollup[postgres]``).

Same rules and SQL as :class:`~telemetry_rollup.server.store.SQLStore`; only connecting,
transactions and placeholders differ. Several server processes (``--workers``) or machines
can share one database: deduplication rests on the primary key, not on process memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from telemetry_rollup.server.store import Cursor, Executor, Pool, SQLStore, StoreError

#: Arbitrary constant key for pg_advisory_xact_lock around migrations.
_MIGRATION_LOCK = 0x7E1E_0001


def _pg(sql: str) -> str:
    # The shared SQL uses "?" placeholders and contains no "%" or literal "?".
    return sql.replace("?", "%s")


class _Executor:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur = self._conn.execute(_pg(sql), tuple(params))
        return _CursorView(cur)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(sql), [tuple(p) for p in params])


class _CursorView:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())


class PostgresStore(SQLStore):
    backend = "postgresql"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self._pool: Pool[psycopg.Connection[Any]] = Pool(self._connect, pool_size)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            # The message names host and database, never the password.
            raise StoreError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._pool.connection() as conn:
            try:
                with conn.transaction():
                    yield _Executor(conn)
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {_first_line(exc)}") from exc

    def _lock_for_migration(self, tx: Executor) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,)).fetchall()

    def close(self) -> None:
        self._pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
