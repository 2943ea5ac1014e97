"""Typed domain errors. Raised in the core; turned into HTTP JSON, RTMP onStatus or
WebSocket error frames at the edge of each protocol."""

from __future__ import annotations


class LivecastError(Exception):
    """Base for every error a client may see. ``code`` is stable, ``message`` is for humans."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.field = field
        if code:
            self.code = code

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class ValidationError(LivecastError):
    status = 400
    code = "invalid"


class Unauthorized(LivecastError):
    status = 401
    code = "unauthorized"


class Forbidden(LivecastError):
    status = 403
    code = "forbidden"


class NotFound(LivecastError):
    status = 404
    code = "not_found"


class RoomNotFound(NotFound):
    code = "room_not_found"


class Conflict(LivecastError):
    status = 409
    code = "conflict"


class PayloadTooLarge(LivecastError):
    status = 413
    code = "too_large"


class RateLimited(LivecastError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str = "too many requests", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class Unavailable(LivecastError):
    status = 503
    code = "unavailable"


class StreamKeyInvalid(LivecastError):
    status = 403
    code = "stream_key_invalid"


class BadGateway(LivecastError):
    """An edge could not get an answer from the origin."""

    status = 502
    code = "upstream_unavailable"


class GatewayTimeout(LivecastError):
    """An edge gave up waiting for the origin."""

    status = 504
    code = "upstream_timeout"


class UpstreamError(LivecastError):
    """An error answer from the origin, passed on to the edge's client as it was."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status
