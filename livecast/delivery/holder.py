"""Serving a room that another origin holds: its playlist and segments pulled from the
holder over HTTP (like an edge, without a cache: the holder's answers are passed on
with their cache headers), so a load balancer may send viewers to any origin.

``OriginSource`` asks a ``HolderPull`` first for rooms this origin does not hold; the
holder is looked up by ``locate`` (the cluster's room leases), which answers None for a
room held here or nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from livecast.core.errors import Unavailable
from livecast.delivery.source import PlaylistReply
from livecast.hls.store import SegmentData

log = logging.getLogger(__name__)

Locate = Callable[[str], Awaitable[str | None]]
Moving = Callable[[str], Awaitable[bool]]


class HolderPull:
    """``moving(slug)``: the room's origin died mid-stream and its publisher may come back
    anywhere; meanwhile its playlist is ``503`` (an edge then serves what it holds, and a
    player keeps reloading) instead of ``404`` (the stream is over)."""

    def __init__(self, locate: Locate, timeout: float, moving: Moving | None = None) -> None:
        self.locate = locate
        self.moving = moving
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def playlist(self, slug: str, query: Mapping[str, str]) -> PlaylistReply | None:
        base = await self.locate(slug)
        fetched = await self._get(f"{base}/hls/{slug}/index.m3u8", query) if base is not None else None
        if fetched is None:
            if self.moving is not None and await self.moving(slug):
                raise Unavailable("the room is moving to another origin; retry", code="room_moving")
            return None
        body, headers = fetched
        return PlaylistReply(body, headers.get("Cache-Control", "no-cache"))

    async def segment(self, slug: str, name: str) -> SegmentData | None:
        base = await self.locate(slug)
        if base is None:
            return None
        fetched = await self._get(f"{base}/hls/{slug}/{name}", {})
        if fetched is None:
            return None
        body, headers = fetched
        return SegmentData(body, headers.get("Content-Type", "application/octet-stream"), 0.0)

    async def _get(self, url: str, query: Mapping[str, str]) -> tuple[bytes, Mapping[str, str]] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(url, params=dict(query)) as r:
                if r.status != 200:
                    return None
                return await r.read(), r.headers
        except (aiohttp.ClientError, TimeoutError) as err:
            log.info("holder of %s unreachable: %s", url, type(err).__name__)
            return None
