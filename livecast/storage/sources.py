"""The pull-sources repository: a room's ``source_url`` and ``source_on_demand``."""

from __future__ import annotations

import logging

from livecast.storage.database import Database, Row

log = logging.getLogger(__name__)

ALL = "SELECT slug, source_url, source_on_demand FROM rooms WHERE source_url != '' ORDER BY id"
BY_SLUG = "SELECT slug, source_url, source_on_demand FROM rooms WHERE slug = ?"
SET = "UPDATE rooms SET source_url = ?, source_on_demand = ? WHERE slug = ?"

STATEMENTS: tuple[str, ...] = (ALL, BY_SLUG, SET)


class SourceRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Row]:
        return await self.db.fetch_all(ALL)

    async def by_slug(self, slug: str) -> Row | None:
        return await self.db.fetch_one(BY_SLUG, (slug,))

    async def set(self, slug: str, url: str, on_demand: bool) -> int:
        return await self.db.execute(SET, (url, int(on_demand), slug))
