"""Which database a node opens: the "database from URL" factory, where the app is wired.

``database.url`` empty = the embedded SQLite file in the data directory (one node);
``postgresql://user:pass@host:port/db`` = PostgreSQL through an asyncpg pool (several
origins sharing one database).
"""

from __future__ import annotations

import logging

from livecast.config import Settings
from livecast.storage.database import Database
from livecast.storage.postgres import PostgresDatabase, redacted
from livecast.storage.sqlite import SqliteDatabase

log = logging.getLogger(__name__)


def make_database(settings: Settings) -> PostgresDatabase | SqliteDatabase:
    """The backend ``database.url`` names, not yet opened."""
    db = settings.database
    if not db.url:
        return SqliteDatabase(settings.db_path)
    return PostgresDatabase(db.url, pool_size=db.pool_size, connect_timeout=db.connect_timeout,
                            statement_timeout=db.statement_timeout)


def describe(settings: Settings) -> str:
    """Where the data lives, for messages (no password)."""
    return redacted(settings.database.url) if settings.database.url else str(settings.db_path)


async def open_database(settings: Settings) -> Database:
    """The opened (and migrated) backend."""
    db = make_database(settings)
    await db.open()
    return db
