"""The JSON API on an edge: every ``/api/v1/*`` request is passed to the origin.

Method, path, query, body, cookies and auth headers go through unchanged, and the
origin's status, body and headers (``Set-Cookie`` included) come back unchanged. Hop-by-
hop headers are dropped. Cluster headers never cross: a client's are removed before
the request goes on, the origin's are removed from the response, and the edge adds the
cluster secret plus the viewer's address itself (the origin trusts that address only
with the secret, so rate limits count viewers, not edges). Cookie-authenticated unsafe
requests pass the CSRF check against the edge's own host first (``livecast.api.csrf``);
the origin trusts that check for requests with the secret. One attempt per request (a
POST is never repeated): a refused connection is a 502, no answer in
``cluster.upstream_timeout`` a 504, both as JSON.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from livecast.cluster import NODE_HEADERS, client_ip
from livecast.core.errors import PayloadTooLarge
from livecast.edge.upstream import ORIGIN, OriginClient, upstream_errors
from livecast.keys import SETTINGS

HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
))
_DROP = HOP_BY_HOP | frozenset(h.lower() for h in NODE_HEADERS)
_DROP_RESPONSE = _DROP | {"date", "server"}


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _DROP:
            headers.add(name, value)
    headers["X-Livecast-Client-Ip"] = client_ip(request)  # behind a trusted proxy: the proxy's client
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        raise web.HTTPNotFound()  # WebSocket routes are served by the edge itself
    client = request.app[ORIGIN]
    limit = request.app[SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    body = await request.read() if request.can_read_body else None  # bounded by client_max_size
    headers = client.headers(_forward_headers(request))
    # A refused connection sent nothing: any request may go to the next origin instead.
    for _ in range(len(client.bases) - 1):
        try:
            return await _forward(request, client, headers, body)
        except aiohttp.ClientConnectorError:
            client.failover()
    with upstream_errors():
        return await _forward(request, client, headers, body)


async def _forward(request: web.Request, client: OriginClient, headers: dict[str, str],
                   body: bytes | None) -> web.Response:
    async with client.session.request(
        request.method, client.url(request.rel_url.path_qs), headers=headers, data=body,
        allow_redirects=False, timeout=aiohttp.ClientTimeout(total=client.timeout),
    ) as upstream:
        payload = await upstream.read()
        response = web.Response(status=upstream.status, body=payload)
        for name, value in upstream.headers.items():
            if name.lower() not in _DROP_RESPONSE:
                response.headers.add(name, value)
        return response


def setup(app: web.Application) -> None:
    """Register last: routes the edge serves itself (chat WebSocket) must match first."""
    app.router.add_route("*", "/api/v1/{tail:.*}", proxy)
