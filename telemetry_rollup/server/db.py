"""The database layer under the store: errors, connection pools, the dialect, and one query layer.

Every statement the store runs is written once, with ``?`` placeholders, in SQL that both SQLite
(3.35+) and PostgreSQL (10+) accept. What differs per backend is a handful of words, held by a
:class:`Dialect` (the auto-numbered key, a row lock, a table without row ids, advisory locks), and
how connections and transactions are made (``db_sqlite``, ``db_pg``, which import only this
module). The shapes the store repeats (insert many rows; insert unless present; insert or add
to what is there; read rows by their keys or by a range of days) are built here from a
:class:`Table`, so the store says what to store, not how to spell it.

Nothing here imports a third-party package: ``report`` needs only the database driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar


class StoreError(Exception):
    """The database cannot be opened, migrated or used."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    """One transaction's statements (``?`` placeholders on every backend)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...

    def pipelined(self) -> AbstractContextManager[None]:
        """Statements whose results are not read may be sent together (one round trip on
        PostgreSQL); an error surfaces at the end of the block at the latest."""
        ...


@dataclass(frozen=True)
class Dialect:
    """The few words in which the backends' SQL differs."""

    name: str
    #: The auto-numbered primary key column type (``{serial}`` in a migration).
    serial: str
    #: Appended to a SELECT whose rows the transaction will update (PostgreSQL row locks;
    #: SQLite's writer holds the whole database already).
    for_update: str
    #: Appended to CREATE TABLE for a table that is its primary key (SQLite ``WITHOUT ROWID``
    #: saves a second copy of the key; ``{without_rowid}`` in a migration).
    without_rowid: str
    #: A query counting the tables named "meta" the store can see.
    meta_exists: str
    #: Wait for and take transaction-scoped locks on 64-bit keys, given as one array parameter
    #: (None: the backend serialises every writer already).
    lock_keys: str | None = None
    #: Take one such lock if it is free, answering true or false.
    try_lock: str | None = None
    #: Bound parameters per statement (SQLite allows 32766).
    max_params: int = 30000
    #: Rows are passed as one array per column (PostgreSQL), not as many placeholders.
    arrays: bool = False


class Database(Protocol):
    """What a backend gives the store: transactions, read snapshots and its dialect."""

    dialect: Dialect
    readonly: bool

    def transaction(self) -> AbstractContextManager[Executor]:
        """A write transaction: committed when the block ends, rolled back on an exception."""
        ...

    def reading(self) -> AbstractContextManager[Executor]:
        """A read-only snapshot that never waits for a writer."""
        ...

    def close(self) -> None: ...


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for an advisory lock on ``parts`` (a collision only serialises more)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock(tx: Executor, dialect: Dialect, keys: Sequence[int]) -> None:
    """Take the locks on ``keys`` for the rest of the transaction, in sorted order (so two
    transactions locking overlapping keys wait for each other instead of deadlocking)."""
    if dialect.lock_keys is not None and keys:
        tx.execute(dialect.lock_keys, (sorted(set(keys)),)).fetchall()


def try_lock(tx: Executor, dialect: Dialect, key: int) -> bool:
    if dialect.try_lock is None:
        return True
    return bool(tx.execute(dialect.try_lock, (key,)).fetchall()[0][0])


# -- the query layer ----------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table as the query layer sees it: its key columns, then its other columns; ``ints``
    names the integer columns (the others are text)."""

    name: str
    key: tuple[str, ...]
    values: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.values


#: How an insert treats a row whose key is already stored.
IGNORE = "ignore"  # keep the stored row
ADD = "add"  # add the new row's values to the stored row's (a running total)
REPLACE = "replace"  # the new row's values replace the stored row's


@lru_cache(maxsize=1024)
def rows_sql(table: Table, columns: tuple[str, ...], rows: int, arrays: bool) -> str:
    """A source of ``rows`` rows of ``columns``: ``VALUES (?, ?), (?, ?)``, or on a backend with
    arrays one array per column (``SELECT * FROM unnest(?, ?)``): one statement text whatever the
    number of rows, so PostgreSQL parses and plans it once (a 20-row ``VALUES`` upsert cost more
    to send than to run)."""
    if arrays:
        types = ", ".join(f"CAST(? AS {'BIGINT' if c in table.ints else 'TEXT'}[])" for c in columns)
        return f"SELECT * FROM unnest({types})"  # noqa: S608 - column types only
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return "VALUES " + ", ".join([one] * rows)


#: Up to this many rows a statement lists them (``VALUES``) even on a backend with arrays: one
#: request's few rows cost less as plain parameters than as array literals.
FEW_ROWS = 4


def _arrays(dialect: Dialect, rows: int) -> bool:
    return dialect.arrays and rows > FEW_ROWS


def _params(rows: Sequence[Sequence[Any]], width: int, arrays: bool) -> list[Any]:
    if arrays:
        return [[row[i] for row in rows] for i in range(width)]
    return [v for row in rows for v in row]


@lru_cache(maxsize=1024)
def insert_sql(table: Table, rows: int, on_conflict: str = "", arrays: bool = False) -> str:
    """``INSERT`` of ``rows`` rows of every column of ``table``."""
    source = rows_sql(table, table.columns, rows, arrays)
    sql = f"INSERT INTO {table.name} ({', '.join(table.columns)}) {source}"
    if on_conflict == IGNORE:
        sql += f" ON CONFLICT ({', '.join(table.key)}) DO NOTHING"
    elif on_conflict in (ADD, REPLACE):
        plus = f"{table.name}.{{v}} + " if on_conflict == ADD else ""
        sets = ", ".join(f"{v} = {plus.format(v=v)}excluded.{v}" for v in table.values)
        sql += f" ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {sets}"
    elif on_conflict:
        raise ValueError(on_conflict)
    return sql


def _chunks(rows: Sequence[Any], width: int, dialect: Dialect) -> Iterator[Sequence[Any]]:
    size = 5000 if dialect.arrays else max(1, min(1000, dialect.max_params // max(1, width)))
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def insert(tx: Executor, dialect: Dialect, table: Table, rows: Sequence[Sequence[Any]], on_conflict: str = "") -> None:
    """Insert ``rows`` (in their order, which is the order rows are locked in) in as few
    statements as the parameter limit allows. With :data:`ADD` or :data:`REPLACE`, no key may
    appear twice (one statement may not update a row twice)."""
    width = len(table.columns)
    for chunk in _chunks(rows, width, dialect):
        arrays = _arrays(dialect, len(chunk))
        tx.execute(insert_sql(table, 0 if arrays else len(chunk), on_conflict, arrays), _params(chunk, width, arrays))


def insert_returning(
    tx: Executor, dialect: Dialect, table: Table, rows: Sequence[Sequence[Any]]
) -> set[tuple[str, ...]]:
    """Insert ``rows`` unless their key is stored; return the keys (as text) of those inserted."""
    out: set[tuple[str, ...]] = set()
    returning = " RETURNING " + ", ".join(table.key)
    width = len(table.columns)
    for chunk in _chunks(rows, width, dialect):
        arrays = _arrays(dialect, len(chunk))
        sql = insert_sql(table, 0 if arrays else len(chunk), IGNORE, arrays) + returning
        out.update(tuple(str(v) for v in r) for r in tx.execute(sql, _params(chunk, width, arrays)).fetchall())
    return out


def select_by_keys(
    tx: Executor,
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    key: Sequence[str],
    keys: Sequence[Sequence[Any]],
    where: str = "",
    params: Sequence[Any] = (),
) -> list[Any]:
    """``columns`` of the rows whose ``key`` columns equal one of ``keys`` (and ``where``)."""
    out: list[Any] = []
    for chunk in _chunks(keys, len(key), dialect):
        arrays = _arrays(dialect, len(chunk))
        source = rows_sql(table, tuple(key), 0 if arrays else len(chunk), arrays)
        sql = f"SELECT {', '.join(columns)} FROM {table.name} WHERE ({', '.join(key)}) IN ({source})"  # noqa: S608
        if where:
            sql += f" AND {where}"
        out += tx.execute(sql, [*_params(chunk, len(key), arrays), *params]).fetchall()
    return out


def day_range(since: str, until: str, app: str | None, alias: str = "") -> tuple[str, list[Any]]:
    """A condition on the ``day`` (and ``app``) columns, with its parameters."""
    p = f"{alias}." if alias else ""
    cond, params = f"{p}day >= ? AND {p}day <= ?", [since, until]
    if app is not None:
        cond += f" AND {p}app = ?"
        params.append(app)
    return cond, params


# -- connections ------------------------------------------------------------------------

C = TypeVar("C")


class Pool(Generic[C]):
    """At most ``size`` connections, each used by one thread at a time."""

    def __init__(self, factory: Callable[[], C], size: int) -> None:
        self._factory = factory
        self._idle: queue.LifoQueue[C] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[C] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[C]:
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._factory()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            except BaseException:
                self._discard(conn)
                raise
            self._idle.put(conn)
        finally:
            self._slots.release()

    def _discard(self, conn: C) -> None:
        # A connection that saw an error may be mid-transaction or broken: never reuse it.
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        _close(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            _close(conn)


def _close(conn: object) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        # Closing a broken connection may fail; there is nothing more to do with it.
        with contextlib.suppress(Exception):
            close()


# -- database URLs ----------------------------------------------------------------------


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a SQLite URL (sqlite:///file.db or sqlite:////abs/file.db): {redact_url(url)}")
    return Path(url[len(prefix) :])


def default_db_url() -> str:
    """A SQLite file under the user's data directory (created by ``open_store``)."""
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("telemetry-rollup")) / "server.db")


def redact_url(url: str) -> str:
    """A database URL fit for an error message: any password (``user:PW@``) replaced by ``***``,
    and nothing of an unparseable URL beyond its scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)" if "@" in url or ":" in url else url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    tail_clean = tail.split("?", 1)[0]  # query parameters may hold a password too
    return f"{scheme}://{authority}{slash}{tail_clean}"


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def check_db_url(url: str) -> None:
    """Raise ValueError for a URL that names no supported backend (never echoing a password)."""
    if is_postgres_url(url):
        return
    if url.startswith("sqlite:"):
        sqlite_path_from_url(url)
        return
    scheme = url.partition("://")[0] if "://" in url else ""
    what = f"scheme {scheme!r}" if scheme and scheme.replace("+", "").isalnum() else "URL"
    raise ValueError(f"unsupported database {what}: use sqlite:///file.db, sqlite:////abs/file.db or postgresql://…")
