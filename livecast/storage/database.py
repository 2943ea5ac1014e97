"""The database interface every backend provides and every repository uses.

One placeholder style, ``?``, in all statements; a backend whose driver wants another
(PostgreSQL's ``$1``) translates it (``storage.dialect``). Rows are read-only mappings of
column name to value. Driver exceptions never leave a backend: they become the domain
errors of ``storage.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]
Params = Sequence[Any]

# What a repository passes as LIMIT for "no limit": both SQLite and PostgreSQL accept it.
NO_LIMIT = 2**62


def limit_or_all(limit: int) -> int:
    """A LIMIT value for ``limit`` where a negative number means all rows."""
    return limit if limit >= 0 else NO_LIMIT


class Executor(Protocol):
    """Statements on a connection or inside a transaction."""

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an ``INSERT ... RETURNING id``; the new row's id."""
        ...


class Database(Executor, Protocol):
    """A backend: statements outside a transaction run in one of their own."""

    dialect: str  # "sqlite" or "postgresql": which migration scripts apply

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """Committed on success, rolled back on any exception."""
        ...

    async def execute_batch(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        """Run ``statements`` in order in one transaction, committed only if every one
        succeeds; the rows each changed. Where the driver allows it this is one trip instead
        of one per statement plus BEGIN and COMMIT (SQLite: one call into its thread), for
        writes on a hot path such as the recorder's index."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
