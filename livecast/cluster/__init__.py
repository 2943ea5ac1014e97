"""What the nodes of one cluster share: the secret header that marks node-to-node calls.

Edges call the origin with ``X-Livecast-Cluster: <cluster.secret>``. The origin checks
it in constant time; clients never see it (an edge strips it from everything it
proxies, both ways) and a client that sends it with a wrong value is refused.

``client_ip()`` finds the viewer's address behind edges and trusted reverse proxies.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from aiohttp import web

from livecast.core.errors import Forbidden
from livecast.keys import SETTINGS

CLUSTER_HEADER = "X-Livecast-Cluster"
# Headers only nodes may set; an edge drops them from client requests and origin responses.
NODE_HEADERS = (CLUSTER_HEADER, "X-Livecast-Node", "X-Livecast-Client-Ip")


def secret_matches(secret: str, presented: str | None) -> bool:
    if not secret or presented is None:
        return False
    return hmac.compare_digest(secret.encode(), presented.encode())


def is_cluster_request(request: web.Request) -> bool:
    """True if the request carries this cluster's secret."""
    return secret_matches(request.app[SETTINGS].cluster.secret, request.headers.get(CLUSTER_HEADER))


def require_cluster(request: web.Request) -> None:
    if not is_cluster_request(request):
        raise Forbidden("this route is for cluster nodes", code="cluster_only")


def client_ip(request: web.Request) -> str:
    """The viewer's address, the key of every per-address limit.

    An edge passes it on in X-Livecast-Client-Ip (trusted only with the secret). Otherwise,
    when the direct peer is one of ``server.trusted_proxies``, X-Forwarded-For is read from
    the right: the first address that is not itself a trusted proxy is the client. From any
    other peer X-Forwarded-For is ignored (a client could write anything there).
    """
    if CLUSTER_HEADER in request.headers and is_cluster_request(request):
        forwarded = request.headers.get("X-Livecast-Client-Ip")
        if forwarded:
            return forwarded[:64]
    peer = request.remote or ""
    if not is_trusted_proxy(request):
        return peer
    proxies = trusted_networks(tuple(request.app[SETTINGS].server.trusted_proxies))
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    address = peer
    for hop in reversed([h for h in hops if h]):
        if _parse(hop) is None:  # garbage: stop at the last address a trusted proxy vouched for
            return address
        address = hop
        if not _is_trusted(hop, proxies):
            return hop
    return address


def is_trusted_proxy(request: web.Request) -> bool:
    """True if the direct peer is one of ``server.trusted_proxies``."""
    proxies = trusted_networks(tuple(request.app[SETTINGS].server.trusted_proxies))
    return bool(proxies) and _is_trusted(request.remote or "", proxies)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` parsed once (config validation has checked every entry)."""
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    ip = _parse(address)
    return ip is not None and any(ip.version == n.version and ip in n for n in proxies)
