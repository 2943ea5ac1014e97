"""The SQLite backend of the database interface, through aiosqlite: WAL, foreign keys.

One connection per process. Write transactions are serialised by an asyncio lock and
run as ``BEGIN IMMEDIATE`` so that another process (``livecast user create`` beside a
running server) waits on SQLite's busy timeout instead of failing. No caller relies on
that lock for correctness: races are settled by constraints and conditional updates,
as they must be on a backend with concurrent writers.

Driver exceptions are mapped here, and only here, to ``storage.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from livecast.storage.database import Executor, Params, Row
from livecast.storage.errors import (
    CheckViolation,
    ForeignKeyViolation,
    StorageError,
    UniqueViolation,
)
from livecast.storage.migrate import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite names the columns of a unique index that failed, not the index: the names
# they carry in the schema (storage.migrations), which PostgreSQL reports directly.
UNIQUE_CONSTRAINTS: dict[str, str] = {
    "users.username": "users_username_key",
    "users.username_key": "users_username_key",
    "sessions.token_hash": "sessions_pkey",
    "rooms.slug": "rooms_slug_key",
    "rooms.stream_key_hash": "rooms_stream_key_hash_key",
    "chat_bans.room_id, chat_bans.user_id": "chat_bans_room_user_key",
    "room_chat.room_id": "room_chat_pkey",
}
_FAILED = re.compile(r"^(UNIQUE|FOREIGN KEY|CHECK|NOT NULL|PRIMARY KEY) constraint failed(?:: (.*))?$")


def map_error(err: Exception) -> StorageError:
    """The domain error for a sqlite3 (or aiosqlite) exception."""
    if isinstance(err, sqlite3.IntegrityError):
        match = _FAILED.match(str(err))
        kind, detail = (match.group(1), match.group(2) or "") if match else ("", "")
        if kind in ("UNIQUE", "PRIMARY KEY"):
            return UniqueViolation(UNIQUE_CONSTRAINTS.get(detail, detail))
        if kind == "FOREIGN KEY":
            return ForeignKeyViolation("foreign_key")
        if kind in ("CHECK", "NOT NULL"):
            return CheckViolation(detail)
    return StorageError(f"database error: {err}")


async def _mapped(call: Awaitable[T]) -> T:
    try:
        return await call
    except (sqlite3.Error, ValueError) as err:  # aiosqlite raises ValueError once closed
        raise map_error(err) from err


def _written(raw: sqlite3.Connection, statements: Sequence[tuple[str, Params]],
             collect: Callable[[sqlite3.Cursor], T]) -> list[T]:
    """Run ``statements`` in one write transaction on ``raw`` (in aiosqlite's thread),
    ``collect`` each one's cursor; rolled back if any statement, or the commit, fails."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        results = [collect(raw.execute(sql, tuple(params))) for sql, params in statements]
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return results


def _row_counts(raw: sqlite3.Connection, statements: Sequence[tuple[str, Params]]) -> list[int]:
    return _written(raw, statements, lambda cursor: max(0, cursor.rowcount))


def _fetch_first(raw: sqlite3.Connection, statements: Sequence[tuple[str, Params]]) -> Row | None:
    return cast("Row | None", _written(raw, statements, lambda cursor: cursor.fetchone())[0])


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


class _Statements:
    """The Executor methods on one aiosqlite connection (inside a transaction or not)."""

    def __init__(self, conn: Callable[[], aiosqlite.Connection]) -> None:
        self._conn = conn

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await _mapped(self._fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await _mapped(self._fetch_all(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await _mapped(self._execute(sql, params))

    async def insert(self, sql: str, params: Params = ()) -> int:
        row = await self.fetch_one(sql, params)
        if row is None:
            raise StorageError("an INSERT ... RETURNING id returned no row")
        return int(row["id"])

    async def _fetch_one(self, sql: str, params: Params) -> Row | None:
        rows = await self._fetch_all(sql, params)
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, params: Params) -> list[Row]:
        # One trip to the driver's thread (execute, fetch and close together).
        return cast("list[Row]", list(await self._conn().execute_fetchall(sql, params)))

    async def _execute(self, sql: str, params: Params) -> int:
        cursor = await self._conn().execute(sql, params)
        return max(0, cursor.rowcount)


class SqliteDatabase(_Statements):
    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        super().__init__(self._connection)
        self.path = Path(path)
        self._conn_: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn_ is None:
            raise StorageError("database is not open")
        return self._conn_

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=10.0)
        except sqlite3.Error as err:
            raise map_error(err) from err
        conn.row_factory = _dict_row  # type: ignore[assignment]
        self._conn_ = conn
        try:
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
                await _mapped(conn.execute(f"PRAGMA {pragma}"))
            async with self.transaction() as tx:
                await migrate(tx, self.dialect, str(self.path))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn_ is not None:
            conn, self._conn_ = self._conn_, None
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("PRAGMA optimize")
            await conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """A write transaction; committed on success, rolled back on any exception."""
        async with self._write_lock:
            await self._begin()
            try:
                yield _Statements(self._connection)
            except BaseException:
                await _mapped(self._connection().execute("ROLLBACK"))
                raise
            else:
                await _mapped(self._connection().execute("COMMIT"))

    async def _begin(self) -> None:
        await _mapped(self._connection().execute("BEGIN IMMEDIATE"))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction (one trip to the driver's thread)."""
        return (await self.execute_batch(((sql, params),)))[0]

    async def insert(self, sql: str, params: Params = ()) -> int:
        """One ``INSERT ... RETURNING id`` in its own transaction (one trip)."""
        async with self._write_lock:
            row = await self._one_trip(_fetch_first, ((sql, params),))
        if row is None:
            raise StorageError("an INSERT ... RETURNING id returned no row")
        return int(row["id"])

    async def execute_batch(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self._write_lock:
            return await self._one_trip(_row_counts, tuple(statements))

    async def _one_trip(self, run: Callable[..., T], *args: Any) -> T:
        """``run(sqlite3_connection, *args)`` in aiosqlite's thread, in one call. aiosqlite's
        public methods take one trip each (BEGIN, every statement and COMMIT are a thread
        hand-off and an event-loop wake-up apiece); its ``_execute`` and ``_conn`` are the
        two internals they are all built on."""
        conn = self._connection()
        raw = conn._conn  # noqa: SLF001 - see the docstring
        return cast(T, await _mapped(conn._execute(run, raw, *args)))  # type: ignore[no-untyped-call]  # noqa: SLF001

    async def ping(self) -> bool:
        try:
            await self.fetch_one("SELECT 1")
        except StorageError:
            return False
        return True
