"""What the nodes of one cluster share: the secret header that marks node-to-node calls.

Edges call the origin with ``X-Livecast-Cluster: <cluster.secret>``. The origin checks
it in constant time; clients never see it (an edge strips it from everything it
proxies, both ways) and a client that sends it with a wrong value is refused.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from livecast.errors import Forbidden
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
    """The viewer's address: an edge passes it on in X-Livecast-Client-Ip (trusted only with the secret)."""
    if CLUSTER_HEADER in request.headers and is_cluster_request(request):
        forwarded = request.headers.get("X-Livecast-Client-Ip")
        if forwarded:
            return forwarded[:64]
    return request.remote or ""
