"""The edge registry shared by several origins through Redis (``cluster.redis``): an edge
heartbeats to any one origin, and every origin answers ``/play`` and ``/api/v1/cluster``
alike. An origin restart loses nothing: the registry lives in Redis.

Each origin keeps its in-memory ``Registry`` (the handlers stay synchronous and fast)
and syncs it every heartbeat interval: the edges it heard itself are written to one Redis
hash (``livecast:edges``, field = edge URL, value = JSON with the wall time it was heard),
and the edges other origins heard are merged in. An edge is therefore known to every
origin within one heartbeat interval. Redis unreachable: each origin goes on with the
edges it hears itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.cluster.registry import NodeState, Registry
from livecast.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EDGES = "livecast:edges"


class SharedRegistry(Registry):
    def __init__(self, url: str, timeout: float, interval: float) -> None:
        super().__init__(timeout)
        self.interval = interval
        self._client = aioredis.from_url(url, socket_timeout=max(0.5, interval), socket_connect_timeout=1.0)
        self._heard: dict[str, NodeState] = {}  # heard here since the last sync
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def heartbeat(self, url: str, viewers: int, bytes_per_second: float, healthy: bool) -> NodeState:
        node = super().heartbeat(url, viewers, bytes_per_second, healthy)
        self._heard[url] = node
        return node

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sync_forever(), name="registry-sync")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    async def _sync_forever(self) -> None:
        while True:
            try:
                await self.sync()
                if self._failing:
                    log.info("shared edge registry: Redis reachable again")
                self._failing = False
            except (RedisError, OSError) as err:
                if not self._failing:
                    log.warning("shared edge registry: Redis unreachable (%s)", type(err).__name__)
                self._failing = True
            await asyncio.sleep(self.interval)

    async def sync(self) -> None:
        """Write the edges heard here, then merge in the ones the other origins heard."""
        heard, self._heard = self._heard, {}
        wall, mono = time.time(), self.now()
        if heard:
            await self._client.hset(EDGES, mapping={
                url: json.dumps({"viewers": n.viewers, "bytes_per_second": n.bytes_per_second,
                                 "healthy": n.healthy, "seen": wall - (mono - n.last_seen)})
                for url, n in heard.items()})
        for raw_url, raw in (await self._client.hgetall(EDGES)).items():
            url = raw_url.decode() if isinstance(raw_url, bytes) else str(raw_url)
            try:
                data = json.loads(raw)
                self.merge(url, int(data["viewers"]), float(data["bytes_per_second"]), bool(data["healthy"]),
                           wall - float(data["seen"]))
            except (ValueError, KeyError, TypeError):
                continue
            if wall - float(data["seen"]) > self.forget_after:
                await self._client.hdel(EDGES, url)
