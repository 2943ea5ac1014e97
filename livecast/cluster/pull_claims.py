"""Which origin pulls a room's source: the one holding the room's Redis lease.

A pull source competes for the same lease a publish claims, but only while nobody holds
it (``RoomLeases.claim_free``): the winner pulls and keeps renewing the lease (also
between reconnects to the source), the other origins watch and try again; when the
winner dies its lease lapses and the next try elsewhere wins and continues the room's
timeline. A publish of the room on any origin takes the lease over (``RoomLeases.claim``):
the pulling origin loses it and its pull stops and waits.

Webhooks for a source's state are sent by the origin that holds the pull only; each
carries an identity derived from that hold (the node, its claim of the room and the
change's number within it), claimed once across the cluster.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from aiohttp import web

from livecast.cluster.leases import RoomLeases, Timeline

log = logging.getLogger(__name__)

ClaimedHandler = Callable[[str, Timeline | None], None]


class PullClaims:
    """``on_claimed(slug, timeline)`` runs when this origin wins a room for its pull (the
    media path continues that timeline)."""

    def __init__(self, leases: RoomLeases, on_claimed: ClaimedHandler) -> None:
        self._leases = leases
        self._on_claimed = on_claimed
        self.feeding: dict[str, str] = {}  # slug -> this hold's id (rooms whose pull runs here)
        self._changes: dict[str, int] = {}
        previous = leases.active
        leases.active = lambda slug: slug in self.feeding or previous(slug)  # kept between reconnects
        leases.on_lost(self._lost)

    async def acquire(self, slug: str) -> bool:
        """True when this origin may pull ``slug`` now (it holds the room's lease)."""
        if slug in self._leases.held:
            return slug in self.feeding  # else a publish here holds it (or its release is under way)
        won, timeline = await self._leases.claim_free(slug)
        if won:
            self._on_claimed(slug, timeline)
            self.feeding[slug] = f"{self._leases.ident}:{uuid.uuid4().hex[:8]}"
            self._changes[slug] = 0
            log.info("room %s: this origin pulls its source (won the room's lease)", slug)
        return won

    def holds(self, slug: str) -> bool:
        return slug in self.feeding and slug in self._leases.held

    async def release(self, slug: str) -> None:
        """The pull stopped here (idle, removed, shut down): the lease is free for others."""
        if self.feeding.pop(slug, None) is not None:
            await self._leases.release(slug)

    def identity(self, slug: str) -> str:
        """A source state change's webhook identity; "" (not sent) when not pulled here."""
        hold = self.feeding.get(slug)
        if hold is None:
            return ""
        self._changes[slug] = self._changes.get(slug, 0) + 1
        return f"source:{slug}:{hold}:{self._changes[slug]}"

    def _lost(self, slug: str) -> None:
        if self.feeding.pop(slug, None) is not None:
            log.info("room %s: taken by another origin; its pull waits here", slug)


PULL_CLAIMS: web.AppKey[PullClaims] = web.AppKey("pull_claims")
