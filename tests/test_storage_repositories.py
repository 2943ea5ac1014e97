"""The repositories and services against an in-memory fake of the database interface,
and against the SQLite backend where concurrency is the point.

The fake (``MemoryDatabase``) implements ``storage.database.Database`` on the standard
library's ``sqlite3`` with a ``:memory:`` database, in-process and synchronously: no
aiosqlite, no file, no lock. It is not a recorder of statements: the repositories' SQL
really runs, the SQLite migration scripts build the schema, and driver errors go through
the same constraint-name mapping as the real backend. So these tests fail if a statement
is wrong, if a service needs anything beyond the interface, or if a race would need the
SQLite backend's process-wide write lock to come out right.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from livecast.chat.store import ChatRoomSettings, ChatStore, InsufficientCoins
from livecast.config import AuthSettings
from livecast.core.errors import Conflict, RoomNotFound
from livecast.rooms import RoomService
from livecast.storage import chat, ledger, migrate, rooms, sources, targets, users
from livecast.storage.database import Database, Executor, Params, Row
from livecast.storage.errors import StorageError, UniqueViolation
from livecast.storage.migrations import LATEST, MIGRATIONS
from livecast.storage.sqlite import SqliteDatabase, map_error
from livecast.users import UserService

ROOT = Path(__file__).resolve().parent.parent


class MemoryDatabase:
    """The database interface on an in-memory sqlite3 connection (see the module docstring)."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.statements = 0

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        self.statements += 1
        try:
            return self.conn.execute(sql, tuple(params))
        except sqlite3.Error as err:
            raise map_error(err) from err

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        row = self._run(sql, params).fetchone()
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return [dict(r) for r in self._run(sql, params).fetchall()]

    async def execute(self, sql: str, params: Params = ()) -> int:
        return max(0, self._run(sql, params).rowcount)

    async def insert(self, sql: str, params: Params = ()) -> int:
        row = await self.fetch_one(sql, params)
        assert row is not None
        return int(row["id"])

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        self.conn.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    async def execute_batch(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self.transaction() as tx:
            return [await tx.execute(sql, params) for sql, params in statements]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.conn.close()


@pytest.fixture
async def db() -> AsyncIterator[MemoryDatabase]:
    memory = MemoryDatabase()
    database: Database = memory  # the fake satisfies the interface (checked by mypy)
    async with database.transaction() as tx:
        assert await migrate.migrate(tx, "sqlite", ":memory:") == LATEST
    yield memory
    await memory.close()


@pytest.fixture
def auth() -> AuthSettings:
    return AuthSettings(bcrypt_rounds=4, signup_coins=100)


async def test_usernames_are_unique_whatever_their_case(db: MemoryDatabase, auth: AuthSettings) -> None:
    repo = users.UserRepository(db)
    await repo.insert("Alice", None, "h", "viewer", 0, "t")
    with pytest.raises(UniqueViolation) as err:
        await repo.insert("aLICE", None, "h", "viewer", 0, "t")
    assert err.value.constraint == users.USERNAME_CONSTRAINT
    service = UserService(db, auth)
    try:
        with pytest.raises(Conflict) as taken:
            await service.create_user("ALICE", "password1")
        assert taken.value.code == "username_taken"
        user = await service.require_by_username("alice")
        assert user.username == "Alice"
    finally:
        service.close()


async def test_sessions_and_disabling_through_the_service(db: MemoryDatabase, auth: AuthSettings) -> None:
    service = UserService(db, auth)
    try:
        user = await service.create_user("carol", "password1")
        session = await service.create_session(user)
        assert (await service.user_for_token(session.token)) == user
        assert await service.authenticate("CAROL", "password1") == user
        await service.update_user("carol", disabled=True)
        assert await service.user_for_token(session.token) is None
        assert await service.revoke(session.token) is False  # disabling ended it
        assert (await service.grant_coins("carol", 5)).coins == 105
        assert [u.username for u in await service.list_users()] == ["carol"]
    finally:
        service.close()


async def test_slugs_rooms_and_the_room_cap(db: MemoryDatabase, auth: AuthSettings) -> None:
    service, room_service = UserService(db, auth), RoomService(db)
    try:
        owner = await service.create_user("dave", "password1")
        first = await room_service.create(owner, "Café Live!")
        second = await room_service.create(owner, "cafe live")
        assert (first.slug, second.slug) == ("cafe-live", "cafe-live-2")
        with pytest.raises(Conflict) as taken:
            await room_service.create(owner, "x", slug="cafe-live")
        assert taken.value.code == "slug_taken"
        with pytest.raises(Conflict) as cap:
            await room_service.create(owner, "third", max_rooms=2)
        assert cap.value.code == "room_limit"
        assert [r.slug for r in await room_service.list(limit=-1)] == ["cafe-live-2", "cafe-live"]
        assert await room_service.set_live("cafe-live", True) is True
        assert [r.slug for r in await room_service.list(limit=1)] == ["cafe-live"]
        await room_service.delete("cafe-live")
        with pytest.raises(RoomNotFound):
            await room_service.rotate_key("cafe-live")
    finally:
        service.close()


async def test_chat_store_bans_likes_comments_and_gifts(db: MemoryDatabase, auth: AuthSettings) -> None:
    service, room_service, store = UserService(db, auth), RoomService(db), ChatStore(db)
    try:
        owner = await service.create_user("erin", "password1")
        fan = await service.create_user("frank", "password1")
        room = await room_service.create(owner, "chat room")
        assert await store.ban(room.id, fan.id, owner.id) is True
        assert await store.ban(room.id, fan.id, owner.id) is False  # ON CONFLICT DO NOTHING
        assert [b["user"]["username"] for b in await store.bans(room.id)] == ["frank"]
        await store.add_likes({room.id: 4, room.id + 50: 1})  # a missing room is skipped
        await store.save_settings(room.id, ChatRoomSettings(slow_mode_seconds=3))
        state = await store.room_state(room.id)
        assert (state.likes, state.settings.slow_mode_seconds, state.banned) == (4, 3, {fan.id})
        with pytest.raises(RoomNotFound):
            await store.add_comment(room.id + 50, fan.id, "hi")
        comment_id, _ = await store.add_comment(room.id, fan.id, "hi")
        assert [c.id for c in await store.history(room.id, 10)] == [comment_id]
        with pytest.raises(InsufficientCoins):
            await store.send_gift(room.id, fan.id, owner.id, "rose", 1, 101)
        _, _, balance = await store.send_gift(room.id, fan.id, owner.id, "rose", 2, 100)
        assert balance == 0
        assert (await service.require_by_username("erin")).coins == 200
        assert await store.leaderboard(room.id, 5) == [{"user": {"username": "frank"}, "value": 100, "gifts": 2}]
    finally:
        service.close()


async def test_every_statement_is_registered_for_the_postgresql_check() -> None:
    """Every SQL constant of a repository module is in its STATEMENTS (what the PostgreSQL
    preparation test enumerates), so no statement escapes that check."""
    for module in (users, rooms, chat, ledger, migrate, targets, sources):
        constants = {v for k, v in vars(module).items()
                     if k.isupper() and not k.startswith("_") and isinstance(v, str)
                     and v.split(" ", 1)[0] in ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE")}
        assert constants, module.__name__
        assert constants <= set(module.STATEMENTS), module.__name__


SERVICE_PATHS = ("livecast/users.py", "livecast/rooms.py", "livecast/chat", "livecast/api", "livecast/web",
                 "livecast/webhooks.py", "livecast/cli.py", "livecast/app")


def _service_files() -> Iterator[Path]:
    for name in SERVICE_PATHS:
        path = ROOT / name
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


def test_no_service_touches_the_driver() -> None:
    """Only livecast/storage/sqlite.py may name the SQLite driver; app.py and cli.py may
    name the backend class (livecast.storage.sqlite), never the driver itself."""
    offenders = []
    for path in _service_files():
        text = path.read_text(encoding="utf-8").replace("livecast.storage.sqlite", "")
        for word in ("sqlite3", "aiosqlite", ".rowcount", ".lastrowid"):
            if word in text:
                offenders.append(f"{path.relative_to(ROOT)}: {word}")
    assert offenders == []
    assert len(list(_service_files())) > 20


async def test_an_old_database_upgrades_with_its_data(tmp_path: Path) -> None:
    """A database at schema version 2 (before username_key) opens, upgrades and keeps its rows."""
    path = tmp_path / "livecast.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for migration in MIGRATIONS[:2]:
            conn.executescript(migration.sqlite)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))
        conn.execute("INSERT INTO users (id, username, password_hash, role, coins, created_at)"
                     " VALUES (1, 'OldTimer', 'h', 'admin', 7, 't'), (2, 'bob', 'h', 'viewer', 0, 't')")
        conn.execute("INSERT INTO rooms (id, slug, owner_id, title, stream_key, stream_key_hash, created_at)"
                     " VALUES (1, 'old-room', 1, 'Old', 'k', 'kh', 't')")
        conn.execute("INSERT INTO chat_bans (room_id, user_id, banned_by, created_at) VALUES (1, 2, 1, 't')")
    db = SqliteDatabase(path)
    await db.open()
    try:
        assert (await db.fetch_one("SELECT MAX(version) AS v FROM schema_version") or {})["v"] == LATEST
        repo = users.UserRepository(db)
        assert (await repo.by_name("oldtimer") or {})["coins"] == 7
        with pytest.raises(UniqueViolation):
            await repo.insert("OLDTIMER", None, "h", "viewer", 0, "t")
        bans = await ChatStore(db).bans(1)
        assert [(b["user"]["username"], b["position"]) for b in bans] == [("bob", 1)]
    finally:
        await db.close()


async def test_concurrent_creations_and_gifts_settle_by_constraints(tmp_path: Path, auth: AuthSettings) -> None:
    """On the SQLite backend, concurrent creations of one title all get distinct slugs (a
    taken slug is retried, not pre-empted by a lock) and concurrent gifts never overdraw."""
    db = SqliteDatabase(tmp_path / "livecast.db")
    await db.open()
    service = UserService(db, auth)
    try:
        owner = await service.create_user("gina", "password1")
        fan = await service.create_user("hank", "password1")
        room_service, store = RoomService(db), ChatStore(db)
        created = await asyncio.gather(*(room_service.create(owner, "Same Title") for _ in range(6)))
        assert sorted(r.slug for r in created) == sorted(["same-title", *(f"same-title-{n}" for n in range(2, 7))])

        async def gift() -> bool:
            try:
                await store.send_gift(created[0].id, fan.id, owner.id, "rose", 1, 30)
            except InsufficientCoins:
                return False
            return True

        results = await asyncio.gather(*(gift() for _ in range(10)))
        assert results.count(True) == 3
        assert [(await service.require_by_username(n)).coins for n in ("gina", "hank")] == [190, 10]
    finally:
        service.close()
        await db.close()


async def test_a_closed_database_raises_a_storage_error(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "livecast.db")
    with pytest.raises(StorageError):
        await db.fetch_one("SELECT 1")
    assert await db.ping() is False
