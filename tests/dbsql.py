"""Run one SQL statement on a node's database from outside, whichever backend it uses
(the SQLite file or the PostgreSQL database of ``database.url``), as an operator's tool
would: ``?`` placeholders, rows as tuples."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from livecast.config import Settings
from livecast.storage.dialect import numbered_placeholders


def _sqlite(settings: Settings, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.db_path, timeout=10) as conn:
        return [tuple(r) for r in conn.execute(statement, params).fetchall()]


async def sql(settings: Settings, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows ``statement`` returns (empty for a write)."""
    if not settings.database.url:
        return await asyncio.to_thread(_sqlite, settings, statement, params)
    conn = await asyncpg.connect(settings.database.url)
    try:
        return [tuple(r) for r in await conn.fetch(numbered_placeholders(statement), *params)]
    finally:
        await conn.close()
