"""An edge's connection to its origin: one pooled HTTP client, bounded in time, that
knows when the origin is down.

Every call carries the cluster secret. A GET is retried with exponential backoff
within ``cluster.upstream_timeout``; past it the caller gets ``GatewayTimeout`` (504),
and a refused connection ``BadGateway`` (502). After a failure the origin is marked
down: calls fail at once (no viewer waits on a dead origin) while one background probe
of ``/healthz`` retries with backoff, and the first success marks it up again, so an
edge recovers by itself when the origin returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from livecast.cluster import CLUSTER_HEADER
from livecast.config import Settings
from livecast.core.backoff import Backoff
from livecast.core.errors import BadGateway, GatewayTimeout
from livecast.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
# HTTP statuses worth another try: the origin is restarting or overloaded.
_RETRY_STATUSES = frozenset({502, 503, 504})


@contextlib.contextmanager
def upstream_errors() -> Iterator[None]:
    """Turn a failed call to the origin into the JSON errors clients get: no answer in
    time -> 504, anything else on the connection -> 502."""
    try:
        yield
    except TimeoutError:
        raise GatewayTimeout("the origin did not answer in time") from None
    except aiohttp.ClientError as err:
        raise BadGateway(f"the origin is unreachable ({type(err).__name__})") from None


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class OriginClient:
    def __init__(self, settings: Settings) -> None:
        # Several origins (server.origin = "URL1,URL2"): calls go to one; when it fails
        # they move on to the next (``failover``), so any live origin serves the edge.
        self.bases = [u.strip().rstrip("/") for u in settings.server.origin.split(",") if u.strip()]
        self._current = 0
        self.failovers = 0
        self.secret = settings.cluster.secret
        self.timeout = settings.cluster.upstream_timeout
        self._limit = settings.cluster.upstream_connections
        self._session: aiohttp.ClientSession | None = None
        self.up = True
        self.failures = 0  # consecutive failed calls
        self.requests = 0  # calls made to the origin (counted by callers' metrics too)
        self.errors = 0
        self._probe: asyncio.Task[None] | None = None
        self._down_logged = False

    # -- lifetime ------------------------------------------------------------------

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout),
        )

    async def close(self) -> None:
        if self._probe is not None:
            await cancel_and_wait(self._probe)
        if self._session is not None:
            await self._session.close()

    @property
    def base(self) -> str:
        return self.bases[self._current]

    def failover(self) -> None:
        """Use the next origin from now on (nothing to do with a single origin)."""
        if len(self.bases) > 1:
            old = self.base
            self._current = (self._current + 1) % len(self.bases)
            self.failovers += 1
            log.warning("origin %s failed; using %s", old, self.base)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "OriginClient.start() was not awaited"
        return self._session

    def url(self, path: str) -> str:
        return self.base + path

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        headers[CLUSTER_HEADER] = self.secret
        return headers

    # -- calls ---------------------------------------------------------------------

    async def get(self, path: str, *, timeout: float | None = None, headers: Mapping[str, str] | None = None,
                  retry_statuses: frozenset[int] = _RETRY_STATUSES) -> Fetched:
        """GET ``path`` from the origin, retried with backoff until ``timeout`` (default
        ``cluster.upstream_timeout``). Any HTTP answer but ``retry_statuses`` is returned as is."""
        if not self.up:
            raise BadGateway("the origin is unreachable")
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        retry = Backoff(FIRST_BACKOFF, MAX_BACKOFF)
        last: Exception | None = None
        answered = False  # the origin answered during this call: it is alive, whatever follows
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.requests += 1
                async with self.session.get(self.url(path), headers=self.headers(headers),
                                            timeout=aiohttp.ClientTimeout(total=remaining)) as resp:
                    body = await resp.read()
                    if resp.status not in retry_statuses:
                        self._succeeded()
                        return Fetched(resp.status, resp.headers, body)
                    answered = True
                    last = BadGateway(f"the origin answered {resp.status}")
            except TimeoutError:
                last = GatewayTimeout("the origin did not answer in time")
                if not answered:  # an origin that answers (even 503) is alive: stay with it
                    self.failover()
            except aiohttp.ClientError as err:
                last = BadGateway(f"the origin is unreachable ({type(err).__name__})")
                self.failover()
            self.errors += 1
            sleep = min(retry.next(), deadline - time.monotonic())
            if sleep <= 0:
                break
            await asyncio.sleep(sleep)
        if not answered:
            self._failed(last)
        if isinstance(last, BadGateway | GatewayTimeout):
            raise last
        raise GatewayTimeout("the origin did not answer in time")

    def _succeeded(self) -> None:
        self.failures = 0
        if self._down_logged:
            log.info("origin %s is reachable again", self.base)
            self._down_logged = False
        self.up = True

    def _failed(self, err: Exception | None) -> None:
        """Report a call that exhausted its retries: mark the origin down and probe it."""
        self.failures += 1
        if not self._down_logged:
            log.warning("edge upstream error: origin %s: %s", self.base, err)
            self._down_logged = True
        self.mark_down()

    def mark_down(self) -> None:
        self.up = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_up(), name="origin-probe")

    async def _probe_until_up(self) -> None:
        retry = Backoff(FIRST_BACKOFF * 4, MAX_BACKOFF)
        while True:
            try:
                async with self.session.get(self.url("/healthz"), headers=self.headers(),
                                            timeout=aiohttp.ClientTimeout(total=min(self.timeout, 2.0))) as resp:
                    await resp.read()
                    if resp.status == 200:
                        self._succeeded()
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            self.failover()
            await asyncio.sleep(retry.next())


ORIGIN: web.AppKey[OriginClient] = web.AppKey("origin_client", OriginClient)
