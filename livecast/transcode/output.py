"""The transcoder as an asynchronous output: source units in, rendition units into HLS.

A ``TranscodeSink`` sits behind a lossy ``QueuedOutput`` (if the worker cannot keep up,
the queue drops to the next keyframe and the source is untouched). It sends the source's
video to its worker process and writes what comes back into one HLS rendition per rung
(``HlsService.publish_started(slug, rendition=name)``). The source's audio is shared:
copied into every rendition, released after the rendition's video of the same time so
each rendition's units stay interleaved. A worker that dies is restarted (the renditions'
playlists go on after a discontinuity) up to ``transcode.restart_limit`` times per session.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any

from livecast.config import TranscodeSettings
from livecast.core.media import Codec, MediaUnit, Track
from livecast.hls.service import DEFAULT_RENDITION, HlsService, StreamWriter
from livecast.pipeline.hub import LiveStream
from livecast.transcode import h264, wire
from livecast.transcode.process import WorkerProcess
from livecast.transcode.state import Ladder, Ladders, Variant

log = logging.getLogger(__name__)

MAX_PENDING_AUDIO = 2000  # units held per rendition while its video is behind
FINISH_TIMEOUT = 10.0
DROPPED_WARNING = "rendition_dropped"


class RenditionOut:
    """One rendition's HLS writer plus the audio waiting for its video to catch up."""

    def __init__(self, writer: StreamWriter, fps: float) -> None:
        self.writer = writer
        self.fps = fps
        self.audio: deque[MediaUnit] = deque()
        self.video_dts: int | None = None

    def add_audio(self, unit: MediaUnit) -> None:
        if unit.config or (self.video_dts is not None and unit.dts <= self.video_dts):
            self.writer.write(unit)
            return
        self.audio.append(unit)
        if len(self.audio) > MAX_PENDING_AUDIO:
            self.audio.popleft()

    def add_video(self, unit: MediaUnit) -> None:
        if unit.config:
            self.writer.write(unit)
            return
        audio = self.audio
        while audio and audio[0].dts <= unit.dts:
            self.writer.write(audio.popleft())
        self.writer.write(unit)
        self.video_dts = unit.dts

    def flush(self) -> None:
        while self.audio:
            self.writer.write(self.audio.popleft())


class TranscodeSink:
    def __init__(self, settings: TranscodeSettings, low_latency: bool, hls: HlsService, ladders: Ladders,
                 stream: LiveStream) -> None:
        self.settings = settings
        self.hls = hls
        self.ladders = ladders
        self.stream = stream
        self.slug = stream.slug
        self.ladder: Ladder = ladders.start(stream.slug)
        self.low_latency = low_latency
        self.outs: dict[int, RenditionOut] = {}
        self.video_config: bytes | None = None
        self.audio_config: MediaUnit | None = None
        self.worker: WorkerProcess | None = None
        self.closing = False
        self.metadata: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TranscodeSink({self.slug})"

    # -- Sink -------------------------------------------------------------------------
    async def write(self, unit: MediaUnit) -> None:
        if unit.track is Track.AUDIO:
            self._audio(unit)
        elif unit.codec is Codec.H264:
            await self._video(unit)

    async def set_metadata(self, values: dict[str, Any]) -> None:
        self.metadata = dict(values)
        for out in self.outs.values():
            out.writer.set_metadata(self._rendition_metadata(out))

    async def close(self) -> None:
        self.closing = True
        if self.worker is not None:
            await self.worker.finish(FINISH_TIMEOUT)
        for out in self.outs.values():
            out.flush()
            self.hls.publish_stopped(self.slug, out.writer)
        self.ladders.stop(self.ladder)

    # -- source -> worker -------------------------------------------------------------
    def _audio(self, unit: MediaUnit) -> None:
        if unit.config:
            self.audio_config = unit
            if unit.codec is Codec.AAC:
                self.ladder.audio_codec = h264.audio_codec_string(unit.payload)
        for out in self.outs.values():
            out.add_audio(unit)

    async def _video(self, unit: MediaUnit) -> None:
        if unit.config:
            self.video_config = unit.payload
            self._describe_source(unit.payload)
            if self.worker is None:
                await self._start_worker()
            else:
                await self.worker.send(wire.pack(wire.CONFIG, unit.payload))
            return
        if self.worker is not None:
            await self.worker.send(wire.pack(wire.VIDEO, unit.payload, flags=wire.KEYFRAME if unit.keyframe else 0,
                                             pts=unit.pts, dts=unit.dts))

    def _describe_source(self, avcc: bytes) -> None:
        try:
            codecs = h264.codec_string(avcc)
        except ValueError:
            return
        meta = self.stream.metadata
        width, height = meta.get("width"), meta.get("height")
        source = self.ladder.source or Variant(DEFAULT_RENDITION, int(width or 0), int(height or 0),
                                               self._source_fps(), codecs, int(meta.get("videodatarate") or 0) * 1000)
        source.codecs = codecs
        self.ladder.source = source

    def _source_fps(self) -> float:
        rate = self.stream.metadata.get("framerate")
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else self.stream.stats.fps or 30.0

    def _job(self) -> dict[str, Any]:
        return {"renditions": [vars(r) for r in self.settings.renditions], "encoder": self.settings.encoder,
                "low_latency": self.low_latency, "max_lag": self.settings.max_lag,
                "source_fps": self._source_fps(), "threads": self.settings.encoder_threads}

    async def _start_worker(self) -> None:
        worker = WorkerProcess(self._job(), self._on_message, self._on_exit, write_timeout=self.settings.max_lag * 2)
        self.worker = worker
        await worker.start()
        self.ladder.worker_pid = worker.pid
        if self.video_config is not None:
            await worker.send(wire.pack(wire.CONFIG, self.video_config))

    async def _on_exit(self) -> None:
        if self.closing:
            return
        self.ladder.restarts += 1
        self.ladders.restarts_total += 1
        if self.ladder.restarts > self.settings.restart_limit:
            log.error("room %s: transcoding worker died %d times; the ladder stops", self.slug, self.ladder.restarts)
            self.worker = None
            return
        log.warning("room %s: transcoding worker died; restarting it (%d)", self.slug, self.ladder.restarts)
        await self._start_worker()

    # -- worker -> HLS ----------------------------------------------------------------
    def _on_message(self, msg: wire.Message) -> None:
        if msg.kind == wire.PACKET:
            out = self.outs.get(msg.index)
            if out is not None:
                out.add_video(MediaUnit(Track.VIDEO, Codec.H264, msg.dts, msg.pts, msg.keyframe, msg.payload))
        elif msg.kind == wire.RENDITION:
            self._announce(msg.index, json.loads(msg.payload))
        elif msg.kind == wire.SOURCE:
            size = json.loads(msg.payload)
            if self.ladder.source is not None:
                self.ladder.source.width, self.ladder.source.height = int(size["width"]), int(size["height"])
        elif msg.kind == wire.STATS:
            self._health(json.loads(msg.payload))
        elif msg.kind == wire.DROPPED:
            self._dropped(msg.index, msg.payload.decode(errors="replace"))

    def _announce(self, index: int, info: dict[str, Any]) -> None:
        spec = self.settings.renditions[index]
        avcc = bytes.fromhex(info["avcc"])
        self.ladder.renditions[spec.name] = Variant(spec.name, int(info["width"]), int(info["height"]),
                                                    float(info["fps"]), h264.codec_string(avcc), spec.video_bitrate)
        out = self.outs.get(index)
        if out is None:
            writer = self.hls.publish_started(self.slug, rendition=spec.name)
            out = self.outs[index] = RenditionOut(writer, float(info["fps"]))
            out.writer.set_metadata(self._rendition_metadata(out))
            if self.audio_config is not None:
                out.writer.write(self.audio_config)
        out.add_video(MediaUnit(Track.VIDEO, Codec.H264, 0, 0, True, avcc, config=True))

    def _rendition_metadata(self, out: RenditionOut) -> dict[str, Any]:
        meta = {k: v for k, v in self.metadata.items() if k in ("videocodecid", "audiocodecid")}
        meta["framerate"] = out.fps
        return meta

    def _health(self, report: dict[str, Any]) -> None:
        for name, values in report.items():
            variant = self.ladder.renditions.get(name)
            if variant is not None:
                variant.health = values
        source = self.ladder.source
        if source is not None:
            source.health = {"fps": self.stream.stats.fps, "bitrate": self.stream.stats.bitrate, "speed": 1.0}

    def _dropped(self, index: int, reason: str) -> None:
        spec = self.settings.renditions[index]
        self.ladder.dropped[spec.name] = reason
        self.ladders.dropped_total += 1
        self.stream.extra_warnings.add(DROPPED_WARNING)
        log.warning("room %s: rendition dropped: %s", self.slug, reason)
        out = self.outs.pop(index, None)
        if out is not None:
            out.flush()
            self.hls.publish_stopped(self.slug, out.writer)
