"""CSRF protection for cookie-authenticated requests.

SameSite=Lax keeps the session cookie off cross-SITE POSTs, but another port or sub-domain
of the same host is the same site, and a plain HTML form can POST there with the cookie.
So an unsafe request (POST, PUT, PATCH, DELETE) that carries the session cookie and no
``Authorization: Bearer`` header is accepted only when

- its ``Origin`` is this server's own (the scheme, host and port the request was sent
  to, as a trusted proxy's X-Forwarded-Proto/-Host tell it when there is one), or
  ``server.public_url``'s, or one of ``server.allowed_origins``; or, without a usable
  ``Origin``, the browser says ``Sec-Fetch-Site: same-origin``;
- and, when it has a body, its Content-Type is ``application/json`` (an HTML form cannot
  send that without a CORS preflight, which this server never grants). A request with an
  empty body (logout, key rotation) may declare any type: there is nothing to interpret,
  and HTTP clients such as aiohttp label an empty POST ``application/octet-stream``.

Anything else is a 403 ``csrf_rejected``. Requests with a Bearer token (not sent by
browsers on their own) and node-to-node calls with the cluster secret (an edge checked
them against its own host already) are not affected.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from urllib.parse import urlsplit

from aiohttp import web

from livecast.api.auth import COOKIE_NAME
from livecast.api.middleware import Handler
from livecast.cluster import CLUSTER_HEADER, is_cluster_request, is_trusted_proxy
from livecast.config import ServerSettings
from livecast.core.errors import Forbidden
from livecast.keys import SETTINGS

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str | None:
    """``scheme://host:port`` in lower case with the port spelled out, or None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


@lru_cache(maxsize=8)
def _configured(public_url: str, allowed: tuple[str, ...]) -> frozenset[str]:
    origins = (normalise_origin(o) for o in (public_url, *allowed) if o)
    return frozenset(o for o in origins if o)


def own_origins(request: web.Request) -> set[str]:
    """The origins this request counts as same-origin."""
    settings: ServerSettings = request.app[SETTINGS].server
    own = {f"{request.scheme}://{request.host}"}
    if is_trusted_proxy(request):
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        own.add(f"{proto}://{host}")
    found = {o for o in (normalise_origin(x) for x in own) if o}
    return found | _configured(settings.public_url, tuple(settings.allowed_origins))


def needs_check(request: web.Request) -> bool:
    if request.method not in UNSAFE_METHODS or COOKIE_NAME not in request.cookies:
        return False
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return False
    return not (CLUSTER_HEADER in request.headers and is_cluster_request(request))


def rejection(request: web.Request) -> str | None:
    """Why this cookie-authenticated unsafe request is refused, or None if it may go on."""
    origin = request.headers.get("Origin")
    same_origin = (request.headers.get("Sec-Fetch-Site", "").lower() == "same-origin"
                   or (origin is not None and normalise_origin(origin) in own_origins(request)))
    if not same_origin:
        return "the request comes from another origin" if origin else "the request has no Origin header"
    if request.body_exists and request.content_type != "application/json":
        return "the request body must be application/json"
    return None


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if needs_check(request):
        reason = rejection(request)
        if reason is not None:
            log.warning("CSRF check refused %s %s: %s", request.method, request.path, reason)
            raise Forbidden(f"cross-site request refused: {reason}", code="csrf_rejected")
    return await handler(request)
