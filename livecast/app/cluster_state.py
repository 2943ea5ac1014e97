"""The origin's shared live state in Redis (``cluster.redis``): a lease per live room held
by its origin, and the room's HLS timeline, wired into the media path.

A publish, once authorised, claims the room's lease (the publish hook): a room another
origin holds is taken over (that origin drops its publisher), and a room whose holder
died continues its playlist here (``HlsService.resume_provider``). Each new segment
records the timeline; a stream's end releases the lease.

Webhooks: a broadcast continued on another origin (takeover, failover) is one broadcast:
its ``stream.started`` and ``stream.stopped`` carry the broadcast's id, every delivery with
an identity is claimed once in Redis, and the stop of an origin the room was taken from
is not sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from livecast.app.lifecycle import Lifecycle
from livecast.cluster.claims import DeliveryClaims
from livecast.cluster.leases import LEASES, RoomLeases, Timeline
from livecast.cluster.pull_claims import PULL_CLAIMS, PullClaims
from livecast.config import Settings
from livecast.core.events import RelayStateChanged, StreamStarted, StreamStopped
from livecast.core.tasks import Supervisor, cancel_and_wait
from livecast.delivery.holder import HolderPull
from livecast.hls.service import HlsService, Resume
from livecast.ingest import component as ingest
from livecast.keys import BOUND_PORTS, EVENTS, ROOMS
from livecast.rooms import RoomService
from livecast.webhooks import WEBHOOKS, event_identity

log = logging.getLogger(__name__)

SWEEP_MIN_SECONDS = 5.0



def _record(hls: HlsService, leases: RoomLeases, slug: str) -> None:
    room = hls.room(slug)
    if room is not None and room.live_prefix is not None and slug in leases.held:
        next_sequence, discontinuities = room.timeline()
        leases.advance(slug, Timeline(room.live_prefix, next_sequence, discontinuities))


def setup(app: web.Application, settings: Settings) -> Lifecycle | None:
    """Wire the leases into the media path; None when ``cluster.redis`` is not set."""
    if not settings.cluster.redis:
        return None
    leases = app[LEASES] = RoomLeases(settings.cluster.redis, settings.cluster.lease_seconds,
                                      functools.partial(_self_url, app, settings))
    grace = settings.hls.reconnect_grace
    pull = HolderPull(leases.holder_url, settings.cluster.upstream_timeout,
                      lambda slug: leases.moving(slug, grace))
    app[ingest.HLS_SOURCE].remote = pull
    hls = app[ingest.HLS]
    claimed: dict[str, Resume | None] = {}
    hls.resume_provider = lambda slug: claimed.pop(slug, None)
    hls.add_listener(lambda slug: _record(hls, leases, slug))
    leases.on_lost(lambda slug: app[ingest.SESSIONS].kick(slug, "taken over on another origin"))
    leases.active = lambda slug: app[ingest.SESSIONS].get(slug) is not None
    pulls = app[PULL_CLAIMS] = PullClaims(leases, functools.partial(_resume, claimed))  # one origin pulls
    claims = DeliveryClaims(settings.cluster.redis, leases.ident)
    hooks = app[WEBHOOKS]
    hooks.identify, hooks.claims = functools.partial(_identify, leases, pulls), claims
    return functools.partial(_lifecycle, leases=leases, claimed=claimed, pull=pull, claims=claims, grace=grace)


def _resume(claimed: dict[str, Resume | None], slug: str, timeline: Timeline | None) -> None:
    """A room won for its pull source continues its timeline, as a publish's claim does."""
    claimed[slug] = Resume(timeline.next_sequence, timeline.discontinuities) if timeline else None


def _identify(leases: RoomLeases, pulls: PullClaims, event: object) -> str | None:
    """A webhook event's identity across the cluster ("": not sent from here)."""
    if isinstance(event, RelayStateChanged) and event.kind == "source":
        return pulls.identity(event.slug)  # sent by the origin pulling the room only
    if isinstance(event, (StreamStarted, StreamStopped)):
        if isinstance(event, StreamStopped) and leases.taken_over(event.slug):
            return ""  # taken over: the broadcast goes on elsewhere
        broadcast = leases.broadcasts.get(event.slug)
        return f"{event.slug}:{broadcast}" if broadcast else None
    return event_identity(event)


def _self_url(app: web.Application, settings: Settings) -> str:
    """This origin's HTTP base URL as the others reach it: ``cluster.node_url``, else the
    bound address (right on one machine; set node_url on several)."""
    if settings.cluster.node_url:
        return settings.cluster.node_url.rstrip("/")
    host = settings.server.host if settings.server.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{app[BOUND_PORTS].get('http', settings.server.http_port)}"


async def _sweep_forever(app: web.Application, leases: RoomLeases, grace: float) -> None:
    """Rooms flagged live in the database that no origin holds (their holder died and the
    publisher did not come back within ``grace``) are marked offline; also right at start,
    in place of a single node's "everything offline"."""
    while True:
        try:
            await _sweep(app[ROOMS], leases, grace)
        except Exception:
            log.exception("live-flag sweep failed")
        await asyncio.sleep(max(3 * leases.lease_seconds, SWEEP_MIN_SECONDS))


async def _sweep(rooms: RoomService, leases: RoomLeases, grace: float) -> None:
    for slug, owner in await rooms.live_runs():
        held = await leases.held_anywhere(slug)
        if held is None:
            return  # Redis away: nobody can tell, leave the flags
        if not held and not await leases.moving(slug, grace) and await rooms.set_live(slug, False, owner):
            log.info("room %s: marked offline (no origin holds it)", slug)


async def _lifecycle(app: web.Application, *, leases: RoomLeases, claimed: dict[str, Resume | None],
                     pull: HolderPull, claims: DeliveryClaims, grace: float) -> AsyncIterator[None]:
    await leases.start()
    rtmp = app[ingest.RTMP]
    previous = rtmp.publish_hook
    tasks = Supervisor("leases")
    sweeper = asyncio.create_task(_sweep_forever(app, leases, grace), name="live-sweep")

    async def claim_on_publish(slug: str, peer: str, app_name: str) -> bool:
        if previous is not None and not await previous(slug, peer, app_name):
            return False
        timeline = await leases.claim(slug)
        claimed[slug] = Resume(timeline.next_sequence, timeline.discontinuities) if timeline else None
        if rtmp.full(slug):  # filled up during the claim: the listener refuses it, so let go
            claimed.pop(slug, None)
            tasks.spawn(leases.release(slug), name=f"release-{slug}")
        return True

    def on_event(event: object) -> None:
        if isinstance(event, StreamStopped) and not app[PULL_CLAIMS].holds(event.slug):  # a pull keeps it
            tasks.spawn(leases.release(event.slug), name=f"release-{event.slug}")

    rtmp.publish_hook = claim_on_publish
    unsubscribe = app[EVENTS].subscribe(on_event)
    try:
        yield
    finally:
        unsubscribe()
        await cancel_and_wait(sweeper)
        await tasks.wait()
        await tasks.close()
        await leases.close()
        await pull.close()
        await claims.close()
