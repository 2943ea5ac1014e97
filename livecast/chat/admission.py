"""Who may open a chat socket: the per-address socket cap and a room's viewer limit.

Viewers are people, not sockets: a logged-in user counts once, anonymous sockets once
per client address. An address may hold at most ``chat.max_sockets_per_address``
sockets on a node (all rooms together; an IPv6 address counts by its /64, the block one
subscriber usually gets). In a room that is full (``max_viewers``), a new anonymous
visitor is refused unless its address is already in the room (it adds no viewer).

A logged-in viewer gets in ahead of anonymous sockets: at an address that holds its cap
of sockets, the newest anonymous socket of that address is closed (``displaced``) to
make room; in a full room, the newest anonymous socket of the address holding the most
anonymous sockets there (if more than one) is closed. Such a swap leaves the node's and
the room's socket counts as they were. The room's owner and admins always get in. The
same rules run on the origin and on edges that host sockets.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

from livecast.chat.frames import encode, error_frame
from livecast.chat.hub import ChatClient, ChatHub
from livecast.cluster import client_ip

log = logging.getLogger(__name__)

_DISPLACED = encode(error_frame("displaced", "your place went to a logged-in viewer; try again later"))


@dataclass(frozen=True)
class Refusal:
    """Why a socket was not admitted: its error frame's code and message, and the close code."""

    code: str
    message: str
    close_code: int = WSCloseCode.TRY_AGAIN_LATER

    def frame(self) -> str:
        return encode(error_frame(self.code, self.message))


ROOM_FULL = Refusal("room_full", "this room has reached its viewer limit")
TOO_MANY = Refusal("too_many_connections", "too many chat connections from your address")


def address_key(address: str) -> str:
    """The key of a client address for per-address counts: IPv4 as is (also when mapped
    into IPv6), IPv6 by its /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


_warned_proxy = False


def request_address(request: web.Request) -> str:
    """The address key of a socket's client (``client_ip``: behind an edge or a trusted proxy, the viewer's)."""
    return address_key(client_ip(request))


def _proxy_hint(request: web.Request) -> None:
    """Once: per-address caps hit a proxy's own address (X-Forwarded-For was not trusted)."""
    global _warned_proxy
    if not _warned_proxy and request.headers.get("X-Forwarded-For") and client_ip(request) == request.remote:
        _warned_proxy = True
        log.warning("chat sockets refused for address %s, which sends X-Forwarded-For: if it is your reverse"
                    " proxy, list it in server.trusted_proxies, or every viewer counts as that one address",
                    request.remote)


def admit(hub: ChatHub, client: ChatClient, *, max_sockets: int, max_viewers: int, manager: bool,
          viewers: int, request: web.Request | None = None) -> Refusal | None:
    """Join ``client`` to its room (None) or say why not. ``viewers`` is the room's viewer
    count now (the whole cluster's when a bus is shared)."""
    refusal = None if manager else _refusal(hub, client, max_sockets, max_viewers, viewers)
    if refusal is not None:
        hub.stats["refused_" + refusal.code] += 1
        if refusal is TOO_MANY and request is not None:
            _proxy_hint(request)
        return refusal
    hub.join(client)
    return None


def _refusal(hub: ChatHub, client: ChatClient, max_sockets: int, max_viewers: int, viewers: int) -> Refusal | None:
    """Why not, or None; a logged-in viewer may displace anonymous sockets (closed here)."""
    user = client.user
    displace: list[ChatClient] = []
    if max_sockets and hub.sockets_from(client.address) >= max_sockets:
        victim = hub.newest_anonymous(client.address) if user is not None else None
        if victim is None:
            return TOO_MANY
        displace.append(victim)
    if max_viewers and viewers >= max_viewers:
        if user is None:
            if not hub.anonymous_present(client.room, client.address):
                return ROOM_FULL
        elif not hub.is_present(client.room, user.id):
            victim = hub.crowded_anonymous(client.room)
            if victim is None:
                return ROOM_FULL
            displace.append(victim)
    for victim in dict.fromkeys(displace):
        log.info("an anonymous chat socket in room %s makes room for a logged-in viewer", victim.room)
        hub.stats["displaced"] += 1
        hub.leave(victim)
        hub.close_text(victim, WSCloseCode.TRY_AGAIN_LATER, _DISPLACED)
    return None
