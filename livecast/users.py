"""Accounts and login sessions.

Passwords are hashed with bcrypt in the bounded pool of ``livecast.passwords`` (its own
threads, logins first). A registration of a taken name is refused before any hashing.

Session tokens are ``secrets.token_urlsafe(32)`` (256 bits); the database stores only
their SHA-256, so a leaked database cannot be replayed as logins.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from livecast.config import AuthSettings
from livecast.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationError,
)
from livecast.passwords import PasswordPool
from livecast.storage.database import Database
from livecast.storage.errors import UniqueViolation
from livecast.storage.ledger import LedgerRepository
from livecast.storage.users import USERNAME_CONSTRAINT, UserRepository

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("viewer", "streamer", "admin")
USERNAME_RE = re.compile(r"[A-Za-z0-9_]{3,32}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
MAX_GRANT = 1_000_000
MAX_BALANCE = 10**15


def utc_now() -> str:
    """Now as ISO 8601 UTC with a ``Z`` suffix (second precision)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_username(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("username must be a string", field="username")
    if not USERNAME_RE.fullmatch(value):
        raise ValidationError("username must be 3-32 letters, digits or underscores", field="username")
    return value


def validate_password(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("password must be a string", field="password")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX or not _encodable(value):
        raise ValidationError(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters of valid text",
                              field="password")
    return value


def validate_role(value: object) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    return value


def validate_email(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_RE.fullmatch(value) or not _encodable(value):
        raise ValidationError("email is not a valid address", field="email")
    return value


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    coins: int
    disabled: bool
    created_at: str
    email: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=int(row["id"]),
            username=str(row["username"]),
            role=str(row["role"]),
            coins=int(row["coins"]),
            disabled=bool(row["disabled"]),
            created_at=str(row["created_at"]),
            email=row["email"],
        )

    def to_json(self) -> dict[str, Any]:
        """What anyone may see about this user."""
        return {"id": self.id, "username": self.username, "role": self.role,
                "coins": self.coins, "created_at": self.created_at}

    def to_private_json(self) -> dict[str, Any]:
        """What the user sees about themselves."""
        return {**self.to_json(), "email": self.email}

    def to_admin_json(self) -> dict[str, Any]:
        return {**self.to_json(), "email": self.email, "disabled": self.disabled}


@dataclass(frozen=True)
class Session:
    token: str
    user: User
    expires_at: float


class UserService:
    def __init__(self, db: Database, settings: AuthSettings) -> None:
        self.repo = UserRepository(db)
        self.ledger = LedgerRepository(db)
        self.settings = settings
        self.passwords = PasswordPool(settings.bcrypt_workers, settings.bcrypt_queue)
        self._dummy_hash: str | None = None

    def close(self) -> None:
        """Stop the hashing threads (queued jobs are cancelled)."""
        self.passwords.close()

    # -- accounts -----------------------------------------------------------------

    async def create_user(self, username: object, password: object, *, role: object = None,
                          email: object = None) -> User:
        """Validate and create an account; 409 ``username_taken`` on a case-insensitive duplicate.

        A taken name is refused before hashing; the unique index still settles two
        registrations of one new name that race past that check.
        """
        name, secret, role_, email_ = self.validate_new(username, password, role=role, email=email)
        if await self.get_by_username(name) is not None:
            raise Conflict("username is already taken", field="username", code="username_taken")
        hashed = await self.passwords.hash(secret, self.settings.bcrypt_rounds)
        now = utc_now()
        try:
            user_id = await self.repo.insert(name, email_, hashed, role_, max(0, self.settings.signup_coins), now)
        except UniqueViolation as err:
            if err.constraint == USERNAME_CONSTRAINT:
                raise Conflict("username is already taken", field="username", code="username_taken") from err
            raise
        log.info("created %s account %s (id %d)", role_, name, user_id)
        return User(user_id, name, role_, max(0, self.settings.signup_coins), False, now, email_)

    def validate_new(self, username: object, password: object, *, role: object = None,
                     email: object = None) -> tuple[str, str, str, str | None]:
        """The checked (username, password, role, email) of a new account, or a 400."""
        return (validate_username(username), validate_password(password),
                validate_role(self.settings.default_role if role is None else role), validate_email(email))

    async def get_by_id(self, user_id: int) -> User | None:
        row = await self.repo.by_id(user_id)
        return User.from_row(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        """Case-insensitive lookup; None for unknown or syntactically impossible names."""
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            return None
        row = await self.repo.by_name(username)
        return User.from_row(row) if row else None

    async def require_by_username(self, username: str) -> User:
        user = await self.get_by_username(username)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        return user

    async def list_users(self, limit: int = -1, after_id: int = 0) -> list[User]:
        """Accounts by id: up to ``limit`` (-1: all) with an id above ``after_id``."""
        rows = await self.repo.list(limit, after_id)
        return [User.from_row(r) for r in rows]

    # -- login --------------------------------------------------------------------

    async def authenticate(self, username: object, password: object) -> User:
        """The user for these credentials; 401 ``invalid_credentials`` or 403 ``account_disabled``.

        Takes one bcrypt check whether or not the user exists, so timing does not reveal
        which usernames are registered.
        """
        if not isinstance(username, str):
            raise ValidationError("username must be a string", field="username")
        if not isinstance(password, str):
            raise ValidationError("password must be a string", field="password")
        row = None
        if USERNAME_RE.fullmatch(username):
            row = await self.repo.with_hash_by_name(username)
        hashed = str(row["password_hash"]) if row else await self._dummy()
        ok = await self.passwords.check(password, hashed)
        if row is None or not ok:
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        user = User.from_row(row)
        if user.disabled:
            raise Forbidden("this account is disabled", code="account_disabled")
        return user

    async def warm_up(self) -> None:
        """Prepare the dummy hash now, so the first unknown-user login is not slower."""
        await self._dummy()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.passwords.hash(secrets.token_urlsafe(16), self.settings.bcrypt_rounds)
        return self._dummy_hash

    # -- sessions -----------------------------------------------------------------

    @property
    def session_ttl(self) -> float:
        return self.settings.session_ttl_hours * 3600.0

    async def create_session(self, user: User) -> Session:
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires = now + self.session_ttl
        await self.repo.add_session(token_hash(token), user.id, utc_now(), now, expires)
        return Session(token, user, expires)

    async def user_for_token(self, token: object) -> User | None:
        """The enabled user behind an unexpired token, else None."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return None
        row = await self.repo.user_for_token(token_hash(token), time.time())
        return User.from_row(row) if row else None

    async def revoke(self, token: object) -> bool:
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return False
        return await self.repo.delete_session(token_hash(token)) > 0

    async def revoke_all(self, user_id: int) -> int:
        return await self.repo.delete_sessions_of(user_id)

    async def purge_expired_sessions(self) -> int:
        return await self.repo.delete_expired_sessions(time.time())

    # -- administration -------------------------------------------------------------

    async def update_user(self, username: str, *, role: object = None, disabled: object = None) -> User:
        """Change role and/or disabled state in one transaction. Disabling revokes every
        session of the user at once (the caller emits ``UserDisabled``)."""
        role_ = None if role is None else validate_role(role)
        if disabled is not None and not isinstance(disabled, bool):
            raise ValidationError("disabled must be true or false", field="disabled")
        user = await self.require_by_username(username)
        await self.repo.update(user.id, role_, disabled)
        if role_ is not None and role_ != user.role:
            log.info("user %s role %s -> %s", user.username, user.role, role_)
        if disabled is not None and disabled != user.disabled:
            log.info("user %s %s", user.username, "disabled" if disabled else "enabled")
        return await self._reload(user.id)

    async def set_role(self, username: str, role: object) -> User:
        return await self.update_user(username, role=role)

    async def set_disabled(self, username: str, disabled: bool) -> User:
        return await self.update_user(username, disabled=disabled)

    async def grant_coins(self, username: str, amount: object) -> User:
        """Add 1..1,000,000 coins; 409 ``balance_limit`` past 10**15."""
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_GRANT:
            raise ValidationError(f"amount must be an integer from 1 to {MAX_GRANT}", field="amount")
        user = await self.require_by_username(username)
        if not await self.ledger.grant(user.id, amount, MAX_BALANCE):
            raise Conflict("balance would exceed the limit", field="amount", code="balance_limit")
        log.info("granted %d coins to %s", amount, user.username)
        return await self._reload(user.id)

    async def _reload(self, user_id: int) -> User:
        user = await self.get_by_id(user_id)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        return user
