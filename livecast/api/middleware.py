"""One place where domain errors and aiohttp's HTTP errors become JSON error bodies."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from livecast.core.http import error_response
from livecast.core.errors import LivecastError, PayloadTooLarge, RateLimited, ValidationError
from livecast.keys import SETTINGS
from livecast.storage.errors import IntegrityViolation, StorageError

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
    except StorageError as err:
        if isinstance(err, IntegrityViolation):  # a race a service did not expect: still a bug
            log.exception("unexpected constraint violation on %s %s", request.method, request.path[:200])
            return error_response(500, "internal", "internal server error")
        log.warning("database unavailable on %s %s: %s", request.method, request.path[:200], err)
        return error_response(503, "database_unavailable", "the database is unavailable; try again",
                              headers={"Retry-After": "1"})
    except ConnectionResetError:
        log.debug("client went away during %s %s", request.method, request.path)
        raise
    except OSError as err:
        if err.errno != errno.ENAMETOOLONG:
            log.exception("unhandled error on %s %s", request.method, request.path[:200])
            return error_response(500, "internal", "internal server error")
        # aiohttp's static files look a name up on disk as given: one over the file
        # system's limit is just not there.
        return error_response(404, "not_found", "no such file")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``malformed_json`` / 413 ``too_large`` error.

    A declared Content-Length over the limit is refused before reading; an undecodable
    body (bad Content-Encoding), deep nesting (RecursionError) and huge integers
    (ValueError) are validation errors, never a 500.
    """
    declared = request.content_length
    if declared is not None and declared > request.app[SETTINGS].server.max_body_bytes:
        raise PayloadTooLarge("request body too large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise PayloadTooLarge("request body too large") from err
    except web.RequestPayloadError as err:
        raise ValidationError("request body could not be read", code="bad_request") from err
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError as err:
        raise ValidationError("request body is nested too deeply", code="malformed_json") from err
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValidationError("request body is not valid JSON", code="malformed_json") from err
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object", code="malformed_json")
    return data
