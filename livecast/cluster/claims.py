"""Webhook deliveries claimed once across the cluster: ``SET livecast:delivery:{id} NX EX``.

The origin whose ``SET NX`` succeeds sends the delivery; the others skip it. The key
expires after ``CLAIM_SECONDS`` (longer than any origin takes to see the same event).
When Redis does not answer, the delivery is sent anyway (at least once beats at most
once for a webhook) and a warning is logged once per outage.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "livecast:delivery:"
CLAIM_SECONDS = 3600


class DeliveryClaims:
    def __init__(self, url: str, node: str, timeout: float = 1.0) -> None:
        self._client = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._node = node
        self.degraded = False

    async def claim(self, delivery_id: str) -> bool:
        try:
            won = await self._client.set(PREFIX + delivery_id, self._node, nx=True, ex=CLAIM_SECONDS)
        except (RedisError, OSError) as err:
            if not self.degraded:
                log.warning("webhooks: Redis unreachable (%s); deliveries are sent without a cluster-wide claim",
                            type(err).__name__)
            self.degraded = True
            return True
        if self.degraded:
            log.info("webhooks: Redis reachable again; deliveries are claimed once across the cluster")
        self.degraded = False
        return bool(won)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass
