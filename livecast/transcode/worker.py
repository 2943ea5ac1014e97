"""The transcoding worker process: decode the source once, scale and encode each rendition.

Run as ``python -m livecast.transcode.worker '<json job>'``; reads ``wire`` messages on
stdin (the source's compressed video) and writes encoded packets of every rendition on
stdout. Each rendition forces an IDR frame wherever the source has a keyframe (and only
there: no scene cuts, no periodic keyframes), so all renditions cut segments and parts at
the same media time. A rendition whose work makes the worker fall more than ``max_lag``
seconds behind real time is dropped (the most expensive one first) and reported.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO

import av

from av.video.reformatter import Interpolation, VideoReformatter

from livecast.config import RenditionSpec
from livecast.transcode import h264, wire
from livecast.transcode.ladder import Rung, rungs

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
STATS_EVERY_MS = 1000


@dataclass
class Encoder:
    index: int
    rung: Rung
    ctx: Any
    min_gap_ms: float  # frame-rate reduction: skip frames closer than this (keyframes never)
    scaler: VideoReformatter = field(default_factory=VideoReformatter)  # keeps its scaling context
    last_pts: int | None = None
    announced: bool = False
    busy: float = 0.0  # seconds spent scaling and encoding in this stats window
    frames: int = 0
    bytes: int = 0
    total_busy: float = 0.0


@dataclass
class Job:
    specs: list[RenditionSpec]
    encoder: str
    low_latency: bool
    max_lag: float
    source_fps: float
    threads: int = 0
    encoders: list[Encoder] = field(default_factory=list)


def open_encoder(job: Job, index: int, rung: Rung) -> Encoder:
    ctx: Any = av.CodecContext.create(job.encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = rung.width, rung.height, "yuv420p"
    ctx.time_base = MS
    fps = rung.fps or job.source_fps
    ctx.framerate = Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = rung.video_bitrate
    ctx.gop_size = 100_000  # keyframes come only where the source has them
    ctx.thread_count = job.threads  # 0: FFmpeg picks (sliced threads: no added delay)
    options = {"forced-idr": "1"}
    if job.encoder == "libx264":
        options.update({"preset": rung.preset, "bf": "0", "sc_threshold": "0",
                        "x264-params": "scenecut=0:keyint=infinite:min-keyint=1"})
        if job.low_latency:
            options["tune"] = "zerolatency"
    ctx.options = options
    ctx.open()
    gap = 1000.0 / rung.fps * 0.9 if rung.fps and rung.fps < job.source_fps else 0.0
    return Encoder(index, rung, ctx, gap)


class Worker:
    def __init__(self, job: Job, out: BinaryIO) -> None:
        self.job = job
        self.out = out
        self.decoder: Any = None
        self.waiting_key = True
        self.t0: float | None = None
        self.pts0 = 0
        self.window_start: int | None = None

    def send(self, kind: int, payload: bytes = b"", **kw: Any) -> None:
        self.out.write(wire.pack(kind, payload, **kw))

    def configure(self, avcc: bytes) -> None:
        self.decoder = av.CodecContext.create("h264", "r")
        self.decoder.extradata = avcc
        self.decoder.thread_type = "AUTO"
        self.waiting_key = True

    def video(self, msg: wire.Message) -> None:
        if self.decoder is None or (self.waiting_key and not msg.keyframe):
            return
        self.waiting_key = False
        packet = av.Packet(msg.payload)
        packet.pts, packet.dts, packet.time_base = msg.pts, msg.dts, MS
        for frame in self.decoder.decode(packet):
            self.frame(frame)
        self.check_lag(msg.dts)

    def frame(self, frame: Any) -> None:
        if not self.job.encoders and not self.open_ladder(frame.width, frame.height):
            return
        key = bool(frame.key_frame)
        pts = int(frame.pts)
        for enc in list(self.job.encoders):
            if not key and enc.last_pts is not None and pts - enc.last_pts < enc.min_gap_ms:
                continue
            started = time.perf_counter()
            out = enc.scaler.reformat(frame, width=enc.rung.width, height=enc.rung.height, format="yuv420p",
                                      interpolation=Interpolation.BICUBIC)
            out.pts, out.time_base = pts, MS
            out.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            enc.last_pts = pts
            self.emit(enc, enc.ctx.encode(out))
            enc.busy += time.perf_counter() - started
            enc.frames += 1

    def open_ladder(self, width: int, height: int) -> bool:
        self.send(wire.SOURCE, json.dumps({"width": width, "height": height}).encode())
        chosen = {r.name: r for r in rungs(self.job.specs, width, height)}
        for index, spec in enumerate(self.job.specs):
            if spec.name in chosen:
                self.job.encoders.append(open_encoder(self.job, index, chosen[spec.name]))
        return bool(self.job.encoders)

    def emit(self, enc: Encoder, packets: list[Any]) -> None:
        for packet in packets:
            nals = h264.split_annexb(bytes(packet))
            if not enc.announced:
                sps, pps = h264.parameter_sets(nals)
                if not sps or not pps:
                    continue
                rung = enc.rung
                info = {"width": rung.width, "height": rung.height,
                        "fps": float(rung.fps or self.job.source_fps),
                        "avcc": h264.avcc_record(sps, pps).hex()}
                self.send(wire.RENDITION, json.dumps(info).encode(), index=enc.index)
                enc.announced = True
            data = h264.to_avcc([n for n in nals if n[0] & 0x1F not in (h264.NAL_SPS, h264.NAL_PPS)])
            enc.bytes += len(data)
            pts = int(packet.pts)
            dts = int(packet.dts) if packet.dts is not None else pts
            self.send(wire.PACKET, data, index=enc.index, flags=wire.KEYFRAME if packet.is_keyframe else 0,
                      pts=pts, dts=dts)
        self.out.flush()

    def check_lag(self, dts: int) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.pts0, self.window_start = now, dts, dts
            return
        lag = (now - self.t0) - (dts - self.pts0) / 1000
        if lag > self.job.max_lag and self.job.encoders:
            worst = max(self.job.encoders, key=lambda e: e.busy + e.total_busy)
            self.job.encoders.remove(worst)
            reason = f"{worst.rung.name} fell {lag:.1f} s behind real time"
            self.send(wire.DROPPED, reason.encode(), index=worst.index)
            self.t0, self.pts0 = now, dts  # measure afresh without it
        assert self.window_start is not None
        if dts - self.window_start >= STATS_EVERY_MS:
            self.stats((dts - self.window_start) / 1000)
            self.window_start = dts

    def stats(self, seconds: float) -> None:
        report = {}
        for enc in self.job.encoders:
            report[enc.rung.name] = {
                "fps": round(enc.frames / seconds, 2), "bitrate": int(enc.bytes * 8 / seconds),
                "speed": round(seconds / enc.busy, 2) if enc.busy else None,
            }
            enc.total_busy = enc.total_busy * 0.5 + enc.busy
            enc.busy, enc.frames, enc.bytes = 0.0, 0, 0
        self.send(wire.STATS, json.dumps(report).encode())
        self.out.flush()

    def finish(self) -> None:
        if self.decoder is not None:
            for frame in self.decoder.decode(None):
                self.frame(frame)
        for enc in self.job.encoders:
            self.emit(enc, enc.ctx.encode(None))


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    job = Job([RenditionSpec(**r) for r in spec["renditions"]], spec["encoder"], spec["low_latency"],
              spec["max_lag"], spec.get("source_fps") or 30.0, int(spec.get("threads", 0)))
    worker = Worker(job, sys.stdout.buffer)
    stdin = sys.stdin.buffer
    while (msg := wire.read_message(stdin)) is not None:
        if msg.kind == wire.CONFIG:
            worker.configure(msg.payload)
        elif msg.kind == wire.VIDEO:
            worker.video(msg)
        elif msg.kind == wire.END:
            break
    worker.finish()
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main(sys.argv))
