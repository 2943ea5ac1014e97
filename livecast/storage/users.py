"""The users-and-sessions repository: all SQL about accounts and login sessions.

Usernames are unique case-insensitively through ``username_key`` (the lower-cased name)
and its unique index ``users_username_key``.
"""

from __future__ import annotations

import logging

from livecast.storage.database import Database, Row, limit_or_all

log = logging.getLogger(__name__)

USERNAME_CONSTRAINT = "users_username_key"

_COLUMNS = "id, username, role, coins, disabled, created_at, email"
INSERT_USER = (
    "INSERT INTO users (username, username_key, email, password_hash, role, coins, disabled, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 0, ?) RETURNING id"
)
BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = ?"
BY_NAME = f"SELECT {_COLUMNS} FROM users WHERE username_key = ?"
WITH_HASH_BY_NAME = f"SELECT {_COLUMNS}, password_hash FROM users WHERE username_key = ?"
LIST = f"SELECT {_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?"
SET_ROLE = "UPDATE users SET role = ? WHERE id = ?"
SET_DISABLED = "UPDATE users SET disabled = ? WHERE id = ?"
DELETE_EXPIRED_OF_USER = "DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?"
INSERT_SESSION = "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)"
USER_FOR_TOKEN = (
    "SELECT u.id, u.username, u.role, u.coins, u.disabled, u.created_at, u.email"
    " FROM sessions s JOIN users u ON u.id = s.user_id"
    " WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0"
)
DELETE_SESSION = "DELETE FROM sessions WHERE token_hash = ?"
DELETE_SESSIONS_OF_USER = "DELETE FROM sessions WHERE user_id = ?"
DELETE_EXPIRED = "DELETE FROM sessions WHERE expires_at <= ?"

STATEMENTS: tuple[str, ...] = (
    INSERT_USER, BY_ID, BY_NAME, WITH_HASH_BY_NAME, LIST, SET_ROLE, SET_DISABLED,
    DELETE_EXPIRED_OF_USER, INSERT_SESSION, USER_FOR_TOKEN, DELETE_SESSION,
    DELETE_SESSIONS_OF_USER, DELETE_EXPIRED,
)


def username_key(username: str) -> str:
    return username.lower()


class UserRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, username: str, email: str | None, password_hash: str, role: str,
                     coins: int, created_at: str) -> int:
        """The new user's id; ``UniqueViolation(users_username_key)`` if the name is taken."""
        return await self.db.insert(INSERT_USER, (username, username_key(username), email, password_hash,
                                                  role, coins, created_at))

    async def by_id(self, user_id: int) -> Row | None:
        return await self.db.fetch_one(BY_ID, (user_id,))

    async def by_name(self, username: str) -> Row | None:
        return await self.db.fetch_one(BY_NAME, (username_key(username),))

    async def with_hash_by_name(self, username: str) -> Row | None:
        return await self.db.fetch_one(WITH_HASH_BY_NAME, (username_key(username),))

    async def list(self, limit: int, after_id: int) -> list[Row]:
        return await self.db.fetch_all(LIST, (after_id, limit_or_all(limit)))

    async def update(self, user_id: int, role: str | None, disabled: bool | None) -> None:
        """Role and/or disabled state in one transaction; disabling ends every session."""
        async with self.db.transaction() as tx:
            if role is not None:
                await tx.execute(SET_ROLE, (role, user_id))
            if disabled is not None:
                await tx.execute(SET_DISABLED, (int(disabled), user_id))
                if disabled:
                    await tx.execute(DELETE_SESSIONS_OF_USER, (user_id,))

    # -- sessions -----------------------------------------------------------------

    async def add_session(self, token_hash: str, user_id: int, created_at: str, now: float,
                          expires_at: float) -> None:
        """Store a session, dropping the user's expired ones in the same transaction."""
        async with self.db.transaction() as tx:
            await tx.execute(DELETE_EXPIRED_OF_USER, (user_id, now))
            await tx.execute(INSERT_SESSION, (token_hash, user_id, created_at, expires_at))

    async def user_for_token(self, token_hash: str, now: float) -> Row | None:
        return await self.db.fetch_one(USER_FOR_TOKEN, (token_hash, now))

    async def delete_session(self, token_hash: str) -> int:
        return await self.db.execute(DELETE_SESSION, (token_hash,))

    async def delete_sessions_of(self, user_id: int) -> int:
        return await self.db.execute(DELETE_SESSIONS_OF_USER, (user_id,))

    async def delete_expired_sessions(self, now: float) -> int:
        return await self.db.execute(DELETE_EXPIRED, (now,))
