"""The origin's view of its cluster: edges announce themselves, viewers are sent to one.

Every ``cluster.heartbeat_interval`` seconds an edge posts its public URL, its viewers,
the HLS bytes/s it serves and whether it reaches the origin to
``POST /api/v1/cluster/heartbeat`` (cluster secret required). The registry lives in
memory: an origin restart forgets the edges, and they are back after one interval.

``GET /api/v1/rooms/{slug}/play`` picks where a viewer plays a room from
(``choose_node``): among the healthy edges heard from within
``cluster.heartbeat_timeout``, those whose load (viewers) is close to the least loaded
one's, and among those the one ranked first by a rendezvous hash of (room, node), so a
room keeps to one edge (warm cache) while loads stay close, and rooms spread over the
edges. With no such edge the origin itself serves. ``GET /api/v1/cluster`` (admins) lists
the nodes and their load.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from aiohttp import web
from yarl import URL

from livecast.api import openapi
from livecast.api.auth import NO_STORE, read_body, require_user
from livecast.cluster import is_cluster_request, load, require_cluster
from livecast.cluster.registry import (  # noqa: F401  (re-exported for the tests)
    Candidate,
    NodeRegistry,
    Registry,
    choose_node,
    rendezvous_score,
)
from livecast.core.errors import ValidationError
from livecast.keys import ROOMS, SETTINGS

log = logging.getLogger(__name__)

MAX_URL_CHARS = 512
MAX_VIEWERS = 10_000_000
MAX_BYTES_PER_SECOND = 1e12
ORIGIN_ID = "origin"

_CSP_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(?::\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?")

REGISTRY: web.AppKey[NodeRegistry] = web.AppKey("cluster_registry")

routes = web.RouteTableDef()


# -- validation ----------------------------------------------------------------------


def parse_node_url(value: Any) -> str:
    """An edge's public base URL: http(s), a host, no credentials, query or fragment;
    returned without a trailing slash."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        raise ValidationError(f"url must be an http(s) URL of at most {MAX_URL_CHARS} characters", field="url")
    try:
        url = URL(value)
        origin = str(url.origin())
    except ValueError as err:
        raise ValidationError("url is not a valid URL", field="url") from err
    if (url.scheme not in ("http", "https") or not url.host or url.user is not None or url.password is not None
            or url.query_string or url.fragment or not _CSP_ORIGIN.fullmatch(origin)):
        raise ValidationError("url must be http(s)://host[:port][/path] without query or credentials", field="url")
    return str(url).rstrip("/")


def _number(data: dict[str, Any], name: str, limit: float, integer: bool) -> float:
    value = data.get(name)
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
            or not math.isfinite(value) or not 0 <= value <= limit):
        kind = "an integer" if integer else "a number"
        raise ValidationError(f"{name} must be {kind} from 0 to {limit:g}", field=name)
    return float(value)


def parse_heartbeat(data: dict[str, Any]) -> tuple[str, int, float, bool]:
    url = parse_node_url(data.get("url"))
    viewers = int(_number(data, "viewers", MAX_VIEWERS, True))
    rate = float(_number(data, "bytes_per_second", MAX_BYTES_PER_SECOND, False))
    healthy = data.get("healthy")
    if not isinstance(healthy, bool):
        raise ValidationError("healthy must be true or false", field="healthy")
    return url, viewers, rate, healthy


# -- the origin itself ---------------------------------------------------------------


def origin_url(request: web.Request) -> str:
    """How viewers reach this origin: ``server.public_url``, else the host they asked."""
    public = request.app[SETTINGS].server.public_url.rstrip("/")
    if public:
        return public
    host = request.host or ""
    if _HOST.fullmatch(host):
        return f"{request.scheme}://{host}"
    return ""  # relative URLs: same host as the page


def media_origins(app: web.Application) -> list[str]:
    """Origins of the live edges (for the pages' CSP and the edges' own)."""
    registry = app.get(REGISTRY)
    if registry is None:
        return []
    found = {str(URL(n.url).origin()) for n in registry.available()}
    public = app[SETTINGS].server.public_url
    if public:
        found.add(str(URL(public).origin()))
    return sorted(o for o in found if _CSP_ORIGIN.fullmatch(o))


def _origin_json(request: web.Request, registry: NodeRegistry) -> dict[str, Any]:
    meter = request.app.get(load.LOAD)
    return {"id": ORIGIN_ID, "url": origin_url(request), "role": "origin",
            "viewers": meter.viewers() if meter else 0,
            "bytes_per_second": round(meter.bytes_per_second(), 1) if meter else 0.0,
            "healthy": True, "last_seen_seconds": 0.0, "state": "live"}


# -- routes --------------------------------------------------------------------------


@routes.post("/api/v1/cluster/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    require_cluster(request)
    url, viewers, rate, healthy = parse_heartbeat(await read_body(request))
    registry = request.app[REGISTRY]
    node = registry.heartbeat(url, viewers, rate, healthy)
    settings = request.app[SETTINGS].cluster
    return web.json_response({
        "node": {"id": node.id, "url": node.url, "role": "edge"},
        "heartbeat_interval": settings.heartbeat_interval,
        "heartbeat_timeout": settings.heartbeat_timeout,
        "media_origins": media_origins(request.app),
    }, headers=NO_STORE)


@routes.get("/api/v1/cluster")
async def list_nodes(request: web.Request) -> web.Response:
    await require_user(request, "admin")
    registry = request.app[REGISTRY]
    now = registry.now()
    nodes = [_origin_json(request, registry)] + [n.to_json(now, registry.timeout) for n in registry.nodes()]
    return web.json_response({"nodes": nodes, "heartbeat_timeout": registry.timeout}, headers=NO_STORE)


@routes.get("/api/v1/rooms/{slug}/play")
async def play(request: web.Request) -> web.Response:
    room = await request.app[ROOMS].require(request.match_info["slug"])
    edge = request.app[REGISTRY].choose(room.slug)
    if edge is not None:
        node = {"id": edge.id, "url": edge.url, "role": "edge"}
    else:
        node = {"id": ORIGIN_ID, "url": origin_url(request), "role": "origin"}
    if is_cluster_request(request):
        log.debug("play %s asked through an edge: %s", room.slug, node["url"])
    # with a ladder: its multivariant playlist (edges relay it, its renditions and thumbnails)
    path = room.master_url if request.app[SETTINGS].transcode.enabled else room.hls_url
    return web.json_response({"hls_url": f"{node['url']}{path}", "node": node}, headers=NO_STORE)


def setup(app: web.Application, registry: NodeRegistry) -> None:
    """Register the routes, the registry and the origin's own load meter."""
    app[REGISTRY] = registry
    load.setup(app)
    app.add_routes(routes)


# -- documentation -------------------------------------------------------------------

_S = {"type": "string"}
_NODE_PROPS: dict[str, Any] = {"id": _S, "url": _S, "role": {"type": "string", "enum": ["origin", "edge"]}}
_NODE_REF = {"type": "object", "properties": _NODE_PROPS}
openapi.add_schema("Heartbeat", {"type": "object", "required": ["url", "viewers", "bytes_per_second", "healthy"],
                                 "properties": {
    "url": {"type": "string", "maxLength": MAX_URL_CHARS, "description": "the edge's public base URL"},
    "viewers": {"type": "integer", "minimum": 0, "maximum": MAX_VIEWERS},
    "bytes_per_second": {"type": "number", "minimum": 0},
    "healthy": {"type": "boolean", "description": "false when the edge cannot reach the origin"}}})
openapi.add_schema("HeartbeatReply", {"type": "object", "properties": {
    "node": _NODE_REF, "heartbeat_interval": {"type": "number"}, "heartbeat_timeout": {"type": "number"},
    "media_origins": {"type": "array", "items": _S, "description": "origins viewers may be sent to"}}})
openapi.add_schema("ClusterNode", {"type": "object", "properties": {
    **_NODE_PROPS, "viewers": {"type": "integer"}, "bytes_per_second": {"type": "number"},
    "healthy": {"type": "boolean"}, "last_seen_seconds": {"type": "number"},
    "state": {"type": "string", "enum": ["live", "stale"]}}})
openapi.add_schema("ClusterList", {"type": "object", "properties": {
    "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/ClusterNode"}},
    "heartbeat_timeout": {"type": "number"}}})
openapi.add_schema("PlayTarget", {"type": "object", "required": ["hls_url", "node"], "properties": {
    "hls_url": _S, "node": _NODE_REF}})

openapi.document("POST", "/api/v1/cluster/heartbeat", "An edge announces itself and its load", tags=["cluster"],
                 body="Heartbeat", responses={200: "HeartbeatReply", 403: "missing or wrong cluster secret",
                                              503: "too many nodes"},
                 description="Nodes only: requires the X-Livecast-Cluster header with cluster.secret. "
                             "An edge missing heartbeats for cluster.heartbeat_timeout is no longer offered.")
openapi.document("GET", "/api/v1/cluster", "The cluster's nodes and their load", tags=["cluster"], auth="admin",
                 responses={200: "ClusterList"})
openapi.document("GET", "/api/v1/rooms/{slug}/play", "Where to play a room from", tags=["rooms", "cluster"],
                 responses={200: "PlayTarget", 404: "no such room"},
                 description="The least loaded healthy edge (the same one for a room while loads are close), "
                             "or the origin when no edge is available.")
