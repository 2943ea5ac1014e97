"""An edge's ``SegmentSource``: playlists and segments pulled from the origin.

- Segments (and LL-HLS parts) never change under one URL: cached as long as the
  origin's ``max-age`` allows, LRU-bounded by ``cluster.cache_bytes``.
- A room's playlist is cached for at most half a target duration (less if the origin
  says so). Each room keeps the *newest* full playlist it has seen, from any request
  (plain or LL-HLS blocking), and a fetched playlist that is older than it is not
  served: a viewer never gets a playlist older than one it was already given. A
  playlist from a new timeline (no segment in common: the origin restarted) replaces it.
- Concurrent misses for one object make one upstream request (``Coalescer``).
- When the origin cannot be reached, what the edge holds is still served (playlists
  with ``max-age=0``); anything else is a 502/504 JSON error within
  ``cluster.upstream_timeout``.
- LL-HLS directives (``_HLS_msn``, ``_HLS_part``, ``_HLS_skip``) are passed to the
  origin, keyed and coalesced on their values, so N viewers held on the same part
  make one held upstream request. A request the newest playlist already satisfies is
  answered at once without going upstream.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from livecast.config import Settings
from livecast.core.errors import BadGateway, GatewayTimeout, UpstreamError
from livecast.delivery.source import PlaylistReply
from livecast.edge.cache import CachedObject, Coalescer, ObjectCache
from livecast.edge.upstream import Fetched, OriginClient

DIRECTIVES = ("_HLS_msn", "_HLS_part", "_HLS_skip")
MAX_ROOMS = 10_000  # playlist states kept (LRU); a room costs one playlist body
MISSING_TTL = 1.0  # a room the origin says is not live is asked again after this long
SEGMENT_MAX_TTL = 86400.0
_MAX_AGE = re.compile(r"max-age=(\d+)")
_SKIPPED = re.compile(rb"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)")


@dataclass(frozen=True)
class PlaylistView:
    """What the edge needs to know of a media playlist, parsed once per fetch."""

    body: bytes
    cache_control: str
    media_sequence: int
    last_sequence: int  # of the last full segment listed (media_sequence - 1 if none)
    parts_after: int  # LL-HLS parts listed after the last full segment
    target: float
    ended: bool
    uris: frozenset[bytes]
    delta: bool  # an EXT-X-SKIP delta update (never stored as the room's newest)

    @property
    def position(self) -> tuple[int, int, bool]:
        return (self.last_sequence, self.parts_after, self.ended)

    def supersedes(self, other: PlaylistView) -> bool:
        if self.position >= other.position:
            return True
        return not (self.uris & other.uris)  # older position: only a new timeline wins

    def satisfies(self, msn: int, part: int | None) -> bool:
        """Holds segment ``msn`` (or its part ``part``), so a blocking request for it is answerable."""
        if self.ended or self.last_sequence >= msn:
            return True
        return part is not None and msn == self.last_sequence + 1 and part < self.parts_after


def parse_playlist(body: bytes, cache_control: str) -> PlaylistView:
    sequence = 0
    target = 2.0
    segments = 0
    parts_after = 0
    ended = False
    uris: list[bytes] = []
    for line in body.splitlines():
        if not line:
            continue
        if not line.startswith(b"#"):
            segments += 1
            parts_after = 0
            uris.append(line.strip())
        elif line.startswith(b"#EXT-X-PART:"):
            parts_after += 1
        elif line.startswith(b"#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(b":", 1)[1])
        elif line.startswith(b"#EXT-X-TARGETDURATION:"):
            target = float(line.split(b":", 1)[1])
        elif line.startswith(b"#EXT-X-ENDLIST"):
            ended = True
    skipped = _SKIPPED.search(body)
    skip = int(skipped.group(1)) if skipped else 0
    return PlaylistView(body, cache_control, sequence, sequence + skip + segments - 1, parts_after, target, ended,
                        frozenset(uris), skipped is not None)


def max_age(cache_control: str) -> float | None:
    if "no-cache" in cache_control or "no-store" in cache_control:
        return 0.0
    m = _MAX_AGE.search(cache_control)
    return float(m.group(1)) if m else None


def aged(cache_control: str, age: float) -> str:
    """``cache_control`` with its max-age reduced by the time the edge has held the object."""
    return _MAX_AGE.sub(lambda m: f"max-age={max(0, int(int(m.group(1)) - age))}", cache_control)


def _upstream_error(fetched: Fetched) -> UpstreamError:
    code, message = "upstream_error", f"the origin answered {fetched.status}"
    try:
        error = json.loads(fetched.body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return UpstreamError(fetched.status, code, message)


@dataclass
class RoomPlaylist:
    newest: PlaylistView
    fetched: float  # monotonic time the newest was fetched
    expires: float


class EdgeStats:
    def __init__(self) -> None:
        self.hits = {"playlist": 0, "segment": 0, "vod": 0}
        self.misses = {"playlist": 0, "segment": 0, "vod": 0}
        self.stale = 0  # served from the cache because the origin could not be reached
        self.upstream_bytes = 0


class EdgeSource:
    def __init__(self, settings: Settings, client: OriginClient) -> None:
        self.client = client
        self.cache = ObjectCache(settings.cluster.cache_bytes)
        self.stats = EdgeStats()
        self._timeout = settings.cluster.upstream_timeout
        self._fetches: Coalescer[object] = Coalescer()
        self._rooms: OrderedDict[str, RoomPlaylist] = OrderedDict()
        self._missing: dict[str, float] = {}

    @property
    def coalesced(self) -> int:
        """Misses that joined a fetch in flight (a miss that made no upstream request)."""
        return self._fetches.joined

    # -- playlists -----------------------------------------------------------------

    async def playlist(self, slug: str, query: Mapping[str, str]) -> PlaylistReply | None:
        now = time.monotonic()
        room = self._rooms.get(slug)
        directives = {k: query[k] for k in DIRECTIVES if k in query}
        if directives:
            return await self._directed(slug, room, directives, now)
        if room is not None and now < room.expires:
            self.stats.hits["playlist"] += 1
            return self._reply(room, now)
        if room is None and self._missing.get(slug, 0.0) > now:
            self.stats.hits["playlist"] += 1
            return None
        self.stats.misses["playlist"] += 1
        try:
            await self._fetches.run(("playlist", slug), lambda: self._fetch_playlist(slug, ""))
        except (BadGateway, GatewayTimeout):  # unreachable origin; its own error answers pass on
            if room is None:
                raise
            self.stats.stale += 1
            return PlaylistReply(room.newest.body, "public, max-age=0")
        room = self._rooms.get(slug)
        return self._reply(room, time.monotonic()) if room is not None else None

    def _reply(self, room: RoomPlaylist, now: float) -> PlaylistReply:
        return PlaylistReply(room.newest.body, f"public, max-age={max(0, int(room.expires - now))}")

    async def _directed(self, slug: str, room: RoomPlaylist | None, directives: dict[str, str],
                        now: float) -> PlaylistReply | None:
        """An LL-HLS request: blocking reload and/or delta update."""
        if room is not None and "_HLS_skip" not in directives:
            msn = _int(directives.get("_HLS_msn"))
            part = _int(directives.get("_HLS_part"))
            if msn is not None and ("_HLS_part" not in directives or part is not None) \
                    and room.newest.satisfies(msn, part):
                self.stats.hits["playlist"] += 1
                return PlaylistReply(room.newest.body, aged(room.newest.cache_control, now - room.fetched))
        qs = urlencode(sorted(directives.items()))
        key = ("playlist", slug, qs)
        cached = self.cache.get(key)
        if cached is not None and cached.fresh(now):
            self.stats.hits["playlist"] += 1
            return PlaylistReply(cached.body, aged(cached.cache_control, cached.age(now)))
        self.stats.misses["playlist"] += 1
        result = await self._fetches.run(key, lambda: self._fetch_playlist(slug, qs))
        if not isinstance(result, CachedObject):
            return None
        return PlaylistReply(result.body, result.cache_control)

    async def _fetch_playlist(self, slug: str, qs: str) -> CachedObject | None:
        path = f"/hls/{slug}/index.m3u8" + (f"?{qs}" if qs else "")
        room = self._rooms.get(slug)
        # A blocking request may be held up to 3 target durations by the origin, which
        # then answers 503 itself: that answer is passed on, not retried.
        if qs:
            target = room.newest.target if room is not None else 10.0
            fetched = await self.client.get(path, timeout=3 * target + self._timeout,
                                            retry_statuses=frozenset({502}))
        else:
            fetched = await self.client.get(path)
        self.stats.upstream_bytes += len(fetched.body)
        now = time.monotonic()
        if fetched.status == 404:
            self._forget(slug, now)
            return None
        if fetched.status != 200:
            raise _upstream_error(fetched)
        cache_control = fetched.headers.get("Cache-Control", "no-cache")
        try:
            view = parse_playlist(fetched.body, cache_control)
        except ValueError:
            raise BadGateway("the origin sent a malformed playlist") from None
        self._offer(slug, view, now)
        item = CachedObject(200, fetched.body, fetched.headers.get("Content-Type", ""), cache_control,
                            now + min(max_age(cache_control) or 0.0, view.target / 2))
        if qs:
            self.cache.put(("playlist", slug, qs), item)
        return item

    def _offer(self, slug: str, view: PlaylistView, now: float) -> None:
        """Make ``view`` the room's newest playlist unless it is older than the one held."""
        if view.delta:
            return
        self._missing.pop(slug, None)
        ttl = min(max_age(view.cache_control) or 0.0, view.target / 2)
        room = self._rooms.get(slug)
        if room is None or view.supersedes(room.newest):
            self._rooms[slug] = RoomPlaylist(view, now, now + ttl)
        else:
            room.expires = now + ttl  # what we hold is still the newest: fresh again
        self._rooms.move_to_end(slug)
        while len(self._rooms) > MAX_ROOMS:
            self._rooms.popitem(last=False)

    def _forget(self, slug: str, now: float) -> None:
        self._rooms.pop(slug, None)
        if len(self._missing) > MAX_ROOMS:
            self._missing = {k: v for k, v in self._missing.items() if v > now}
            if len(self._missing) > MAX_ROOMS:
                self._missing.clear()
        self._missing[slug] = now + MISSING_TTL

    # -- segments ------------------------------------------------------------------

    async def segment(self, slug: str, name: str) -> CachedObject | None:
        key = ("segment", slug, name)
        now = time.monotonic()
        item = self.cache.get(key)
        if item is not None and item.fresh(now):
            self.stats.hits["segment"] += 1
            return item
        self.stats.misses["segment"] += 1
        try:
            result = await self._fetches.run(key, lambda: self._fetch_segment(slug, name))
        except (BadGateway, GatewayTimeout):
            if item is None:
                raise
            self.stats.stale += 1
            return item
        return result if isinstance(result, CachedObject) else None

    async def _fetch_segment(self, slug: str, name: str) -> CachedObject | None:
        fetched = await self.client.get(f"/hls/{slug}/{name}")
        self.stats.upstream_bytes += len(fetched.body)
        if fetched.status == 404:
            return None
        if fetched.status != 200:
            raise _upstream_error(fetched)
        cache_control = fetched.headers.get("Cache-Control", "")
        ttl = min(max_age(cache_control) or 0.0, SEGMENT_MAX_TTL)
        now = time.monotonic()
        item = CachedObject(200, fetched.body, fetched.headers.get("Content-Type", "application/octet-stream"),
                            cache_control, now + ttl)
        self.cache.put(("segment", slug, name), item)
        return item


def _int(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:  # "²".isdigit()
        return None
    return int(value)
