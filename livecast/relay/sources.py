"""Pull sources per room: which rooms are fed by a remote URL, always or on demand.

Always-on sources start when the origin starts (or when set); an on-demand source starts
on the first playlist request for its room (``wanted``) and stops after
``relay.idle_seconds`` without one.

On a cluster (a ``RoomClaim`` other than the local one, ``refresh`` seconds) every origin
runs every source but only the origin holding the room pulls (``relay.pull``); sources set
or removed through another origin are picked up from the database every ``refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from livecast.api.rooms import SOURCE_URL_PATTERN
from livecast.config import RelaySettings
from livecast.core.errors import ValidationError
from livecast.core.tasks import cancel_and_wait
from livecast.pipeline.sessions import SessionManager
from livecast.relay.pull import LocalClaim, PullSource, RoomClaim, redact
from livecast.storage.sources import SourceRepository

log = logging.getLogger(__name__)

URL_MAX = 2000


def validate_source_url(value: object) -> str:
    """'' (no pull source) or an rtmp://, rtmps://, http(s)://...m3u8 or rtsp:// URL."""
    if not isinstance(value, str) or len(value) > URL_MAX or not re.fullmatch(SOURCE_URL_PATTERN, value):
        raise ValidationError("source_url must be rtmp://, rtmps://, rtsp:// or http(s)://.../x.m3u8 "
                              "(printable ASCII)", field="source_url")
    return value


class PullManager:
    def __init__(self, repo: SourceRepository, sessions: SessionManager, settings: RelaySettings,
                 claim: RoomClaim | None = None, refresh: float | None = None) -> None:
        self.repo = repo
        self._claim = claim or LocalClaim()
        self._refresh = refresh
        self._refreshed = time.monotonic()
        self._sessions = sessions
        self._settings = settings
        self._sources: dict[str, PullSource] = {}
        self._on_demand: dict[str, bool] = {}
        self._idle: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[PullSource], None]] = []

    async def start(self) -> None:
        await self._load()
        self._idle = asyncio.get_running_loop().create_task(self._idle_loop(), name="pull-idle")

    async def close(self) -> None:
        await cancel_and_wait(self._idle)
        for source in list(self._sources.values()):
            await source.close()
        self._sources.clear()

    async def set(self, slug: str, url: str, on_demand: bool) -> None:
        await self.repo.set(slug, url, on_demand)
        self.configure(slug, url, on_demand)

    def configure(self, slug: str, url: str, on_demand: bool) -> None:
        old = self._sources.get(slug)
        if old is not None and (old.url != url or not url):
            del self._sources[slug]
            asyncio.get_running_loop().create_task(old.close(), name=f"pull-close-{slug}")
            old = None
        self._on_demand[slug] = on_demand
        if not url:
            return
        source = old or PullSource(slug, url, self._sessions, self._settings, self._emit, self._claim)
        self._sources[slug] = source
        if not on_demand:
            source.start()

    def forget(self, slug: str) -> None:
        self.configure(slug, "", False)

    def wanted(self, slug: str) -> bool:
        """A viewer asked for ``slug``'s playlist: start its on-demand source. True when
        a source was started just now."""
        source = self._sources.get(slug)
        if source is None:
            return False
        source.last_wanted = time.monotonic()
        if source.running:
            return False
        source.start()
        log.info("on-demand pull of room %s started by a viewer (%s)", slug, redact(source.url))
        return True

    def states(self) -> list[str]:
        return [s.state if s.running else "idle" for s in self._sources.values()]

    def info(self, slug: str) -> dict[str, Any] | None:
        source = self._sources.get(slug)
        if source is None:
            return None
        return {"state": source.state if source.running else "idle", "reason": source.reason,
                "reconnects": source.reconnects}

    def owner_info(self, slug: str) -> dict[str, Any] | None:
        source = self._sources.get(slug)
        if source is None:
            return None
        return {"url": source.url, "on_demand": self._on_demand.get(slug, False)}

    async def _load(self) -> None:
        """Configure the sources the database lists; forget those it no longer does."""
        rows = await self.repo.all()
        listed = {str(row["slug"]) for row in rows}
        for row in rows:
            slug, url, on_demand = str(row["slug"]), str(row["source_url"]), bool(row["source_on_demand"])
            source = self._sources.get(slug)
            if source is None or source.url != url or self._on_demand.get(slug) != on_demand:
                self.configure(slug, url, on_demand)
        for slug in [s for s in self._sources if s not in listed]:
            self.forget(slug)

    async def _refresh_if_due(self, now: float) -> None:
        if self._refresh is None or now - self._refreshed < self._refresh:
            return
        self._refreshed = now
        try:
            await self._load()
        except Exception:
            log.exception("reloading the pull sources failed")

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # a periodic check, not a delay
            now = time.monotonic()
            await self._refresh_if_due(now)
            for slug, source in list(self._sources.items()):
                if (self._on_demand.get(slug) and source.running
                        and now - source.last_wanted > self._settings.idle_seconds):
                    log.info("on-demand pull of room %s stopped: no viewers for %.0f s", slug,
                             self._settings.idle_seconds)
                    await source.close()

    def _emit(self, source: PullSource) -> None:
        for listener in self.listeners:
            try:
                listener(source)
            except Exception:
                log.exception("pull state listener %r failed", listener)
