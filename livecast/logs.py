"""Logging set-up: readable text by default, JSON lines with ``log.format = "json"``."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

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
