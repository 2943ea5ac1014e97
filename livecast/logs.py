"""Logging set-up: readable text by default, JSON lines with ``log.format = "json"``."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

from aiohttp.http_exceptions import HttpProcessingError

from livecast.config import LogSettings

# The id of the HTTP request being handled (set by livecast.observe.requestid).
REQUEST_ID: ContextVar[str | None] = ContextVar("livecast_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record; put it on handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [req {rid}]" if rid else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class MalformedRequestFilter(logging.Filter):
    """Turns aiohttp's "Error handling request" record for an unparsable request (an
    ``HttpProcessingError``: bad request line, header too long, ...) into one short line
    without a traceback. Other errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and str(record.msg).startswith("Error handling request"):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed HTTP request from %s: %s %s", (remote, exc.code, _reason(exc))
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def _reason(exc: HttpProcessingError) -> str:
    """The parser's complaint without the bytes it quotes (they may hold a header's secret)."""
    first = str(exc.message or "").split("\n", 1)[0]
    text = re.split(r"[:'\"]", first, maxsplit=1)[0].strip()[:100]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def quiet_malformed_requests() -> None:
    """Install ``MalformedRequestFilter`` on aiohttp's server logger (once)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())


def setup_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiohttp's access log is one line per request; keep it at warning unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if settings.level != "debug" else logging.INFO)
    quiet_malformed_requests()
