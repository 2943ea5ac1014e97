"""Apply the migrations of ``storage.migrations`` through the database interface."""

from __future__ import annotations

import logging

from livecast.storage.database import Executor
from livecast.storage.dialect import split_script
from livecast.storage.errors import SchemaTooNew
from livecast.storage.migrations import LATEST, MIGRATIONS

log = logging.getLogger(__name__)

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
CURRENT_VERSION = "SELECT MAX(version) AS version FROM schema_version"
RECORD_VERSION = "INSERT INTO schema_version (version) VALUES (?)"
STATEMENTS: tuple[str, ...] = (CREATE_VERSION_TABLE, CURRENT_VERSION, RECORD_VERSION)


async def migrate(tx: Executor, dialect: str, where: str) -> int:
    """Bring the schema up to date inside the caller's transaction; the version now.

    ``where`` names the database in the error for a schema newer than this LiveCast.
    """
    await tx.execute(CREATE_VERSION_TABLE)
    row = await tx.fetch_one(CURRENT_VERSION)
    current = int(row["version"] or 0) if row else 0
    if current > LATEST:
        raise SchemaTooNew(
            f"database {where} has schema version {current}, but this LiveCast "
            f"only knows up to {LATEST}; upgrade LiveCast or use another --data-dir"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        log.info("applying database migration %d", migration.version)
        for statement in split_script(migration.script(dialect)):
            await tx.execute(statement)
        await tx.execute(RECORD_VERSION, (migration.version,))
    return max(current, LATEST)
