"""The PostgreSQL backend of the database interface, through an asyncpg connection pool.

Several origins may share one database: every write that must not race is settled by
the database itself (constraints, conditional UPDATEs that lock the row they change),
never by a lock in this process. Migrations run inside a transaction holding a
transaction-level advisory lock, so origins starting at the same moment migrate one
after the other and the later ones find the schema already current.

Driver exceptions are mapped here, and only here, to ``storage.errors``; the password
in the URL is never logged (``redacted``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from livecast.storage.database import Executor, Params, Row
from livecast.storage.dialect import numbered_placeholders
from livecast.storage.errors import CheckViolation, ForeignKeyViolation, StorageError, UniqueViolation
from livecast.storage.migrate import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

# pg_advisory_xact_lock key held while migrating ("LiveCast" in ASCII, as a bigint).
MIGRATION_LOCK = 0x4C69766543617374
LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def map_error(err: BaseException) -> StorageError:
    """The domain error for an asyncpg (or connection) exception."""
    constraint = str(getattr(err, "constraint_name", "") or "")
    if isinstance(err, asyncpg.UniqueViolationError):
        return UniqueViolation(constraint)
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        return ForeignKeyViolation(constraint or "foreign_key")
    if isinstance(err, (asyncpg.CheckViolationError, asyncpg.NotNullViolationError)):
        return CheckViolation(constraint or str(getattr(err, "column_name", "") or ""))
    return StorageError(f"database error: {type(err).__name__}: {err}")


_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def _mapped(call: Awaitable[T]) -> T:
    try:
        return await call
    except _DRIVER_ERRORS as err:
        raise map_error(err) from err


@functools.lru_cache(maxsize=1024)
def _sql(sql: str) -> str:
    return numbered_placeholders(sql)


def _rows_changed(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Statements:
    """The Executor methods on one asyncpg connection (a transaction's)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        row = await _mapped(self._conn.fetchrow(_sql(sql), *params))
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return [dict(r) for r in await _mapped(self._conn.fetch(_sql(sql), *params))]

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _rows_changed(str(await _mapped(self._conn.execute(_sql(sql), *params))))

    async def insert(self, sql: str, params: Params = ()) -> int:
        row = await self.fetch_one(sql, params)
        if row is None:
            raise StorageError("an INSERT ... RETURNING id returned no row")
        return int(row["id"])


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 10, connect_timeout: float = 5.0,
                 statement_timeout: float = 30.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._pool: Any = None

    def _opened(self) -> Any:
        if self._pool is None:
            raise StorageError("database is not open")
        return self._pool

    async def open(self) -> None:
        log.info("connecting to PostgreSQL at %s (pool of %d)", redacted(self.url), self.pool_size)
        self._pool = await _mapped(asyncpg.create_pool(
            dsn=self.url, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout,
            command_timeout=self.statement_timeout))
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._opened().acquire() as conn, conn.transaction():
            await _mapped(conn.execute(LOCK_SQL, MIGRATION_LOCK))
            await migrate(_Statements(conn), self.dialect, redacted(self.url))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(*_DRIVER_ERRORS):
                await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        try:
            async with self._opened().acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except _DRIVER_ERRORS as err:
            raise map_error(err) from err

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """Committed on success, rolled back on any exception (READ COMMITTED)."""
        async with self._connection() as conn:
            tx = conn.transaction()
            await _mapped(tx.start())
            try:
                yield _Statements(conn)
            except BaseException:
                with contextlib.suppress(*_DRIVER_ERRORS):
                    await tx.rollback()
                raise
            else:
                await _mapped(tx.commit())

    async def execute_batch(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self.transaction() as tx:
            return [await tx.execute(sql, params) for sql, params in statements]

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self._connection() as conn:
            return await _Statements(conn).fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._connection() as conn:
            return await _Statements(conn).fetch_all(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._connection() as conn:
            return await _Statements(conn).execute(sql, params)

    async def insert(self, sql: str, params: Params = ()) -> int:
        async with self._connection() as conn:
            return await _Statements(conn).insert(sql, params)

    async def ping(self) -> bool:
        try:
            await self.fetch_one("SELECT 1 AS ok")
        except StorageError:
            return False
        return True

    def pool_stats(self) -> dict[str, int]:
        """Connections open and idle in the pool, and its maximum size (for metrics)."""
        pool = self._pool
        if pool is None:
            return {"size": 0, "idle": 0, "max": self.pool_size}
        return {"size": int(pool.get_size()), "idle": int(pool.get_idle_size()), "max": self.pool_size}
