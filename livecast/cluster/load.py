"""How busy this node is, as announced in its heartbeat: viewers and HLS bytes per second.

A viewer is a distinct HLS client (remote address + User-Agent) that fetched a playlist
with success in the last ``VIEWER_WINDOW`` seconds; players poll their playlist every
segment or so, so a watching client is always fresh. At most ``MAX_CLIENTS`` clients are
remembered (the oldest are forgotten first), so memory stays bounded whatever the
traffic. Bytes are those of every ``/hls/`` response body, summed in one-second buckets;
the rate is over the last ``RATE_WINDOW`` whole seconds.

``setup(app)`` installs the meter as a middleware (before the app is frozen) and
stores it under ``LOAD``; it runs on edges and on the origin, which lists its own load.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from livecast.observe.metrics import response_body_size

VIEWER_WINDOW = 10.0
RATE_WINDOW = 5
MAX_CLIENTS = 100_000
_UA_CHARS = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoadMeter:
    """Counts HLS viewers and bytes; ``clock`` is injectable for tests (monotonic seconds)."""

    def __init__(self, *, viewer_window: float = VIEWER_WINDOW, rate_window: int = RATE_WINDOW,
                 max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic) -> None:
        self.viewer_window = viewer_window
        self.rate_window = max(1, rate_window)
        self.max_clients = max(1, max_clients)
        self._clock = clock
        self._clients: OrderedDict[int, float] = OrderedDict()  # hash(ip, ua) -> last playlist fetch
        self._buckets: deque[list[int]] = deque()  # [second, bytes], oldest first
        self.bytes_total = 0

    # -- recording -------------------------------------------------------------------

    def playlist_fetched(self, client: str, user_agent: str) -> None:
        key = hash((client, user_agent[:_UA_CHARS]))
        self._clients[key] = self._clock()
        self._clients.move_to_end(key)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def bytes_sent(self, count: int) -> None:
        if count <= 0:
            return
        self.bytes_total += count
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
        self._trim_buckets(second)

    # -- reading ---------------------------------------------------------------------

    def viewers(self) -> int:
        cutoff = self._clock() - self.viewer_window
        clients = self._clients
        while clients:  # oldest first: drop until the first fresh one
            _key, seen = next(iter(clients.items()))
            if seen >= cutoff:
                break
            clients.popitem(last=False)
        return len(clients)

    def bytes_per_second(self) -> float:
        now = int(self._clock())
        self._trim_buckets(now)
        first = now - self.rate_window
        total = sum(count for second, count in self._buckets if first <= second < now)
        return total / self.rate_window

    def _trim_buckets(self, now: int) -> None:
        while self._buckets and self._buckets[0][0] < now - self.rate_window:
            self._buckets.popleft()


LOAD: web.AppKey[LoadMeter] = web.AppKey("load_meter", LoadMeter)


def _middleware(meter: LoadMeter) -> Middleware:
    @web.middleware
    async def measure_load(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        path = request.path
        if path.startswith("/hls/") and request.method in ("GET", "HEAD"):
            if request.method == "GET":
                meter.bytes_sent(response_body_size(response))
            if path.endswith(".m3u8") and response.status < 400:
                meter.playlist_fetched(request.remote or "", request.headers.get("User-Agent", ""))
        return response

    return measure_load


def setup(app: web.Application) -> LoadMeter:
    """Install the meter (idempotent); call while the app can still take middlewares."""
    if LOAD in app:
        return app[LOAD]
    meter = LoadMeter()
    app[LOAD] = meter
    app.middlewares.append(_middleware(meter))
    return meter
