"""The pull side of a relay: a room fed by a remote source instead of a publisher.

``PullSource`` is one more kind of ``Source`` for the session manager. It runs the pull
worker (``relay.pull_worker``, a child process: FFmpeg's network I/O holds the GIL),
reads the FLV it writes, turns tags into units with the project's FLV codec
(``media.flv``) and writes them into its publish session. When the worker ends or fails
it ends the session and starts again with backoff; the room's playlist continues with a
discontinuity (HLS's reconnect grace). A publisher with the room's key takes precedence:
it supersedes the pull's session, and the pull waits until the room is free again. A
congested HLS output pauses reading (the worker then waits in its pipe).

On a cluster the room's ``RoomClaim`` decides which origin pulls: the source waits until
it wins the room (another origin pulling or a publisher anywhere: "waiting"), and stops
when the room is taken from it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from livecast.config import RelaySettings
from livecast.core.backoff import Backoff
from livecast.core.tasks import cancel_and_wait
from livecast.media.flv import FlvToUnits, UnsupportedCodec
from livecast.pipeline.sessions import PublishSession, SessionManager
from livecast.relay.flvstream import FlvStreamReader, Tag
from livecast.rtmp.amf import AmfError, decode_values

log = logging.getLogger(__name__)

StateListener = Callable[["PullSource"], None]
_FREE_POLL = 1.0  # seconds between checks whether a publisher has left the room
_ELSEWHERE = "another origin pulls or publishes the room"


class RoomClaim(Protocol):
    """Whether this origin may feed a room from its source (one origin of a cluster)."""

    async def acquire(self, slug: str) -> bool:
        """True when this origin may pull ``slug`` now; False: another one pulls or publishes it."""
        ...

    def holds(self, slug: str) -> bool:
        ...

    async def release(self, slug: str) -> None:
        ...


class LocalClaim:
    """A single node: the room is always this node's to pull."""

    async def acquire(self, slug: str) -> bool:
        return True

    def holds(self, slug: str) -> bool:
        return True

    async def release(self, slug: str) -> None:
        return None


class _Lost(Exception):
    """The room was taken (another origin, a publisher) while the source connected."""


def redact(url: str) -> str:
    """The URL without credentials or query (tokens often ride there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PullSource:
    def __init__(self, slug: str, url: str, sessions: SessionManager, settings: RelaySettings,
                 on_state: StateListener, claim: RoomClaim | None = None) -> None:
        self.slug = slug
        self._claim = claim or LocalClaim()
        self._stopped = False  # told to stop: what the worker still wrote is not delivered
        self.url = url
        self._sessions = sessions
        self._settings = settings
        self._on_state = on_state
        self.state = "idle"
        self.reason: str | None = None
        self.reconnects = 0
        self.last_wanted = time.monotonic()
        self._backoff = Backoff(settings.retry_first, settings.retry_max, jitter=0.1)
        self._proc: asyncio.subprocess.Process | None = None
        self._session: PublishSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def peer(self) -> str:
        return "pull " + redact(self.url)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pull-{self.slug}")

    async def close(self) -> None:
        await cancel_and_wait(self._task, timeout=5.0)
        self._task = None
        await self._kill()
        self._end_session()
        self._set_state("idle", None)
        await self._claim.release(self.slug)

    def stop(self, reason: str | None) -> None:
        """Superseded by a publisher (or kicked): this worker ends; the loop waits until
        the room is free again."""
        self._stopped = True
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    # -- the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wait_turn()
            self._stopped = False
            self._set_state("connecting", None)
            try:
                reason = await self._pull_once()
            except _Lost:
                reason = "the room was taken by a publisher or another origin"
            self._end_session()
            self.reconnects += 1
            self._set_state("retrying", reason)
            log.info("pull source of room %s (%s): %s; retrying", self.slug, redact(self.url), reason)
            await asyncio.sleep(self._backoff.next())

    async def _wait_turn(self) -> None:
        """Until no publisher is live here and this origin wins the room."""
        while True:
            if self._sessions.get(self.slug) is not None:
                self._set_state("waiting", "a publisher is live in the room")
            elif await self._claim.acquire(self.slug):
                return
            elif self.reason != _ELSEWHERE:
                log.info("pull source of room %s: %s; waiting", self.slug, _ELSEWHERE)
                self._set_state("waiting", _ELSEWHERE)
            await asyncio.sleep(_FREE_POLL)  # polling the room's holder, not a delay under test

    async def _pull_once(self) -> str:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast.relay.pull_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(self.url.encode() + b"\n")  # not in argv: ps shows argv to every user
        self._proc.stdin.close()
        try:
            await self._read(self._proc.stdout)
        except (UnsupportedCodec, ValueError, AmfError) as err:
            return f"unusable source: {err}"[:300]
        finally:
            await self._kill()
        stderr = b""
        if self._proc.stderr is not None:
            stderr = await self._proc.stderr.read(2000)
        text = stderr.decode(errors="replace").strip().splitlines()
        return (text[-1] if text else "the source ended").replace(self.url, redact(self.url))[:300]

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        parser = FlvStreamReader()
        units = FlvToUnits()
        while True:
            await self._wait_relief()
            data = await stdout.read(65536)
            if not data:
                return
            for tag in parser.feed(data):
                self._deliver(tag, units)

    def _deliver(self, tag: Tag, units: FlvToUnits) -> None:
        if self._stopped:
            return  # superseded or kicked: never begin a session over the room's new source
        if tag.kind == 18:
            values = decode_values(tag.body)
            meta = next((v for v in values if isinstance(v, dict)), None)
            if meta is not None:
                self._ensure_session().set_metadata(dict(meta))
            return
        unit = units.video(tag.timestamp, tag.body) if tag.kind == 9 else units.audio(tag.timestamp, tag.body)
        if unit is not None:
            self._ensure_session().write(unit)

    def _ensure_session(self) -> PublishSession:
        if self._session is None or self._session.ended:
            if not self._claim.holds(self.slug) or self._sessions.get(self.slug) is not None:
                raise _Lost  # another origin or a publisher here has the room: it takes precedence
            self._session = self._sessions.begin(self.slug, self)
            self._backoff.reset()
            self._set_state("live", None)
        return self._session

    async def _wait_relief(self) -> None:
        session = self._session
        if session is None or not session.stream.congested:
            return
        relief: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def relieved() -> None:
            if not relief.done():
                relief.set_result(None)

        session.stream.on_relief = relieved
        await relief

    def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.end()

    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def _set_state(self, state: str, reason: str | None) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        try:
            self._on_state(self)
        except Exception:
            log.exception("pull state listener failed")
