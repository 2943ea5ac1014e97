"""One place where domain errors and aiohttp's HTTP errors become JSON error bodies."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from livecast.errors import LivecastError, RateLimited

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LivecastError as err:
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, RateLimited) else None
        return web.json_response(err.to_json(), status=err.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body too large"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, message, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


async def read_json(request: web.Request) -> dict[str, object]:
    """The request body as a JSON object, or a 400/413 domain error."""
    from livecast.errors import PayloadTooLarge, ValidationError

    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise PayloadTooLarge("request body too large") from err
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError("request body is not valid JSON", code="malformed_json") from err
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object", code="malformed_json")
    return data
