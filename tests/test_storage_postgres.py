"""Every statement of the storage layer is portable: prepared on a real PostgreSQL 15.

The test starts its own PostgreSQL cluster (``initdb`` as the ``postgres`` OS user, a
free port, a private socket directory), applies the PostgreSQL scripts of every
migration through the same migration runner the SQLite backend uses, then PREPAREs every
statement the repositories hold (``?`` translated to ``$n`` exactly as the PostgreSQL
backend of the next issue will), and finally drives a few repositories through a minimal
asyncpg adapter of the database interface, to see constraint names map the same way.
Nothing is skipped: without PostgreSQL the test fails and says what is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
from pg import PgCluster

from livecast.storage import chat, ledger, migrate, recordings, rooms, sources, targets, users
from livecast.storage.database import Params, Row
from livecast.storage.dialect import numbered_placeholders
from livecast.storage.errors import ForeignKeyViolation, StorageError, UniqueViolation
from livecast.storage.migrations import LATEST

ALL_STATEMENTS = (*migrate.STATEMENTS, *users.STATEMENTS, *rooms.STATEMENTS, *chat.STATEMENTS,
                  *ledger.STATEMENTS, *recordings.STATEMENTS, *targets.STATEMENTS, *sources.STATEMENTS)


@pytest.fixture
async def pg(pg_server: PgCluster) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database on the session's PostgreSQL 15 cluster (tests/pg.py)."""
    conn = await pg_server.connect(await pg_server.create_database("repo"))
    try:
        yield conn
    finally:
        await conn.close()


def _mapped(err: asyncpg.PostgresError) -> StorageError:
    constraint = str(getattr(err, "constraint_name", "") or "")
    if isinstance(err, asyncpg.UniqueViolationError):
        return UniqueViolation(constraint)
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        return ForeignKeyViolation(constraint)
    return StorageError(str(err))


class PgExecutor:
    """The database interface on one asyncpg connection: the shape of the next issue's backend."""

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        try:
            row = await self.conn.fetchrow(numbered_placeholders(sql), *params)
        except asyncpg.PostgresError as err:
            raise _mapped(err) from err
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return [dict(r) for r in await self.conn.fetch(numbered_placeholders(sql), *params)]
        except asyncpg.PostgresError as err:
            raise _mapped(err) from err

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            status = await self.conn.execute(numbered_placeholders(sql), *params)
        except asyncpg.PostgresError as err:
            raise _mapped(err) from err
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def insert(self, sql: str, params: Params = ()) -> int:
        row = await self.fetch_one(sql, params)
        assert row is not None
        return int(row["id"])

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgExecutor]:
        async with self.conn.transaction():
            yield self

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        await self.conn.close()


async def test_every_statement_prepares_on_postgresql_15(pg: asyncpg.Connection) -> None:
    version = await pg.fetchval("SHOW server_version_num")
    assert int(version) // 10000 == 15
    db = PgExecutor(pg)
    async with db.transaction() as tx:
        assert await migrate.migrate(tx, "postgresql", "test") == LATEST
    failures: list[str] = []
    for sql in ALL_STATEMENTS:
        try:
            await pg.prepare(numbered_placeholders(sql))
        except asyncpg.PostgresError as err:
            failures.append(f"{sql}\n    -> {type(err).__name__}: {err}")
    assert not failures, "statements PostgreSQL refuses:\n" + "\n".join(failures)
    assert len(ALL_STATEMENTS) > 40


async def test_repositories_run_on_postgresql(pg: asyncpg.Connection) -> None:
    db = PgExecutor(pg)
    async with db.transaction() as tx:
        await migrate.migrate(tx, "postgresql", "test")
    repo, room_repo, chats, coins = (users.UserRepository(db), rooms.RoomRepository(db),
                                     chat.ChatRepository(db), ledger.LedgerRepository(db))
    alice = await repo.insert("Alice", None, "h", "streamer", 10, "2026-01-01T00:00:00Z")
    bob = await repo.insert("bob", None, "h", "viewer", 0, "2026-01-01T00:00:00Z")
    with pytest.raises(UniqueViolation) as taken:
        await repo.insert("ALICE", None, "h", "viewer", 0, "2026-01-01T00:00:00Z")
    assert taken.value.constraint == users.USERNAME_CONSTRAINT
    assert (await repo.by_name("aLiCe") or {}).get("id") == alice
    room = rooms.NewRoom("my-room", alice, "t", "", "k", "kh", "2026-01-01T00:00:00Z")
    room_id = await room_repo.insert(room, max_rooms=2)
    with pytest.raises(UniqueViolation) as slug:
        await room_repo.insert(rooms.NewRoom("my-room", alice, "t", "", "k2", "kh2", "x"))
    assert slug.value.constraint == rooms.SLUG_CONSTRAINT
    assert len(await room_repo.page(-1, None, None)) == 1
    assert await chats.ban(room_id, bob, alice, "x") is True
    assert await chats.ban(room_id, bob, alice, "x") is False
    await chats.add_likes({room_id: 3, room_id + 99: 1})
    await chats.add_likes({room_id: 2})
    assert (await chats.room_settings(room_id) or {}).get("likes") == 5
    with pytest.raises(ForeignKeyViolation):
        await chats.add_comment(room_id + 99, bob, "hi", "x")
    assert await coins.send_gift(room_id, alice, bob, "rose", 1, 11, "x") is None
    record = await coins.send_gift(room_id, alice, bob, "rose", 1, 10, "x")
    assert record is not None and record.sender_balance == 0
    assert [dict(r) for r in await coins.leaderboard(room_id, 5)] == [
        {"username": "Alice", "value": 10, "gifts": 1}]
    assert await chats.delete_expired("9999", 10) == 0
