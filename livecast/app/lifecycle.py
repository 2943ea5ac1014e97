"""Running a role's parts in one ``AsyncExitStack``: each part's lifecycle (an async
generator taking the app, aiohttp's ``cleanup_ctx`` shape) is entered in the order given
and left in the reverse order, so the start and stop order is the order in code."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

Lifecycle = Callable[[web.Application], AsyncIterator[None]]


def run_in_order(parts: Sequence[Lifecycle]) -> Lifecycle:
    """One ``cleanup_ctx`` entry that starts ``parts`` in order and stops them in reverse."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for part in parts:
                await stack.enter_async_context(contextlib.asynccontextmanager(part)(app))
            yield

    return lifecycle
