"""Request ids: taken from a sane ``X-Request-Id`` or made up, echoed, and put on log records.

aiohttp runs every request in its own task (a copy of the context), so setting the context
variable here scopes it to that request, including aiohttp's access log line.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from livecast.logs import REQUEST_ID

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9_-]{1,64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Made-up ids: a random per-process prefix and a counter. Unique and cheap (no urandom
# call per request); they are correlation ids, not secrets.
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(1)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get(HEADER, "")
    if not _SANE.fullmatch(rid):
        rid = f"{_PREFIX}{next(_COUNTER):08x}"
    REQUEST_ID.set(rid)  # no reset: the request's own task ends with it
    return await handler(request)


async def echo_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    rid = REQUEST_ID.get()  # responses are prepared in the request's task
    if rid is not None:
        response.headers[HEADER] = rid
