"""One transcoding worker process, seen from the event loop: spawn, feed, read, kill.

The worker is a separate Python process (``python -m livecast.transcode.worker``) talking
``wire`` messages over its stdin and stdout, so decoding and encoding use another core and
never hold this process's GIL. Writes wait for the pipe (``drain``) at most
``write_timeout`` seconds: a worker that stops reading is killed (and, by its owner,
restarted) rather than holding the room's output task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from livecast.transcode import wire

log = logging.getLogger(__name__)

OnMessage = Callable[[wire.Message], None]


class WorkerProcess:
    def __init__(self, job: dict[str, Any], on_message: OnMessage, on_exit: Callable[[], Awaitable[None]],
                 *, write_timeout: float, module: str = "livecast.transcode.worker") -> None:
        self.job = job
        self.module = module
        self.on_message = on_message
        self.on_exit = on_exit
        self.write_timeout = write_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, json.dumps(self.job),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.reader = asyncio.create_task(self._read(self.proc), name=f"transcode-read-{self.proc.pid}")

    async def send(self, data: bytes) -> bool:
        """Write one message; False if the worker is gone or stopped reading (then killed)."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None or proc.stdin.is_closing():
            return False
        try:
            proc.stdin.write(data)
            async with asyncio.timeout(self.write_timeout):
                await proc.stdin.drain()
        except TimeoutError:
            log.warning("transcoding worker %d stopped reading; killing it", proc.pid)
            self.kill()
            return False
        except (ConnectionError, BrokenPipeError):
            return False
        return True

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                header = await proc.stdout.readexactly(wire.HEADER.size)
                kind, index, flags, pts, dts, size = wire.unpack_header(header)
                payload = await proc.stdout.readexactly(size) if size else b""
                try:
                    self.on_message(wire.Message(kind, index, flags, pts, dts, payload))
                except Exception:
                    log.exception("transcoding output failed on a message from worker %d", proc.pid)
        except asyncio.IncompleteReadError:
            pass  # the worker ended (or died)
        await proc.wait()
        if proc is self.proc:
            await self.on_exit()

    async def finish(self, timeout: float) -> None:
        """End of stream: let the worker flush its encoders, then make sure it is gone."""
        proc, reader = self.proc, self.reader
        if proc is None:
            return
        await self.send(wire.pack(wire.END))
        if proc.stdin is not None:
            proc.stdin.close()
        self.proc = None  # its exit is expected now: no restart
        try:
            if reader is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(reader)
        finally:  # cancelled (server shutdown) or not: the process never outlives this
            self._kill(proc)
            if reader is not None and not reader.done():
                reader.cancel()

    def kill(self) -> None:
        if self.proc is not None:
            self._kill(self.proc)

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
