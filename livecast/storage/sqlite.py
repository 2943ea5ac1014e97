"""SQLite storage through aiosqlite: WAL, foreign keys, versioned migrations.

One connection per process. Write transactions are serialised by an asyncio lock and
run as ``BEGIN IMMEDIATE`` so that another process (``livecast user create`` beside a
running server) waits on SQLite's busy timeout instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from livecast.storage.migrations import MIGRATIONS

log = logging.getLogger(__name__)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer LiveCast than this one."""


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=10.0)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("PRAGMA optimize")
            await conn.close()

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = await (await conn.execute("SELECT MAX(version) FROM schema_version")).fetchone()
            current = int(row[0] or 0) if row else 0
            latest = max(v for v, _ in MIGRATIONS)
            if current > latest:
                raise SchemaTooNew(
                    f"database {self.path} has schema version {current}, but this LiveCast "
                    f"only knows up to {latest}; upgrade LiveCast or use another --data-dir"
                )
            for version, script in MIGRATIONS:
                if version <= current:
                    continue
                log.info("applying database migration %d", version)
                for statement in _split(script):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; committed on success, rolled back on any exception."""
        async with self._write_lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> Iterable[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; returns lastrowid."""
        async with self.transaction() as conn:
            cur = await conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
        except (sqlite3.Error, RuntimeError, ValueError):
            return False
        return True


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
