"""TLS for HTTPS and RTMPS: one server ``ssl.SSLContext`` built from ``tls.cert``/``tls.key``.

The HTTP site and the RTMPS listener share the context. ``reload()`` (on SIGHUP) loads the
files again INTO that same context: connections opened afterwards get the new
certificate, while open connections (live RTMPS publishers, HTTP keep-alives) keep theirs.

With TLS on, every HTTPS answer carries ``Strict-Transport-Security`` (``tls.hsts_max_age``
seconds, 0 = no header), so browsers never fall back to plain HTTP for this host.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from livecast.config import TlsSettings
from livecast.keys import SETTINGS

log = logging.getLogger(__name__)


class TlsError(Exception):
    """The certificate or key cannot be loaded."""


class ServerTls:
    def __init__(self, settings: TlsSettings) -> None:
        self.cert = settings.cert
        self.key = settings.key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load()

    def _load(self) -> None:
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as err:
            raise TlsError(f"cannot load TLS certificate {self.cert!r} / key {self.key!r}: {err}") from err

    def reload(self) -> bool:
        """Load the certificate files again; on failure the current certificate stays in use."""
        try:
            self._load()
        except TlsError as err:
            log.error("TLS reload failed, keeping the current certificate: %s", err)
            return False
        log.info("TLS certificate reloaded from %s", self.cert)
        return True


TLS: web.AppKey[ServerTls] = web.AppKey("tls")


def setup(app: web.Application) -> None:
    """Build the server context when ``tls.cert`` and ``tls.key`` are set (fails fast if unreadable)."""
    settings = app[SETTINGS].tls
    if settings.cert and settings.key:
        app[TLS] = ServerTls(settings)
        if settings.hsts_max_age > 0:
            app.on_response_prepare.append(_strict_transport_security)


async def _strict_transport_security(request: web.Request, response: web.StreamResponse) -> None:
    if request.secure:
        max_age = request.app[SETTINGS].tls.hsts_max_age
        response.headers.setdefault("Strict-Transport-Security", f"max-age={max_age}")


def server_tls(app: web.Application) -> ServerTls | None:
    return app.get(TLS)
