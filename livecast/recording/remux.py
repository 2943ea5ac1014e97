"""One MP4 file from a recording's stored segments, remuxed with PyAV (no re-encoding).

``remux_file`` runs in a worker process (``Remuxer``): PyAV holds the GIL for the whole
job. The segments (MPEG-TS, or an fMP4 init followed by its fragments) are joined into
one input file first, which FFmpeg reads as one stream; the output has its index at the
front (``faststart``) so players can start before the end arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from pathlib import Path

log = logging.getLogger(__name__)


def remux_file(source: str, target: str) -> int:
    """Remux ``source`` into the MP4 ``target``; the number of video packets written."""
    import av  # in the worker process only

    tmp = target + ".part"
    video_packets = 0
    with av.open(source) as inp, av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        last_dts: dict[int, int] = {}
        for packet in inp.demux(streams):
            if packet.dts is None or packet.size == 0:
                continue
            previous = last_dts.get(packet.stream.index)
            if previous is not None and packet.dts <= previous:
                continue  # a repeated or backwards timestamp (after a gap): MP4 needs them rising
            last_dts[packet.stream.index] = packet.dts
            if packet.stream.type == "video":
                video_packets += 1
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    os.replace(tmp, target)
    return video_packets


class Remuxer:
    """A small pool of worker processes for remuxing, and one job per target at a time."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._jobs: dict[str, asyncio.Future[int]] = {}

    async def remux(self, source: Path, target: Path) -> int:
        key = str(target)
        job = self._jobs.get(key)
        if job is None:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # a clean child, not a fork of the loop
                self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
            job = asyncio.wrap_future(self._pool.submit(remux_file, str(source), key))
            self._jobs[key] = job
            job.add_done_callback(lambda _: self._jobs.pop(key, None))
        return await asyncio.shield(job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
