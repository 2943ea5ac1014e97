"""The pull worker: a child process that remuxes a remote source to FLV on stdout.

``python -m livecast.relay.pull_worker`` reads a URL from its first line of stdin (not the
command line, which every local user can read in ``ps``: URLs may hold credentials), opens it (rtmp://, rtmps://, an HLS
playlist over http(s)://, rtsp://) with PyAV, takes its first video and first audio
stream and remuxes their packets, not re-encoded, into FLV on stdout (FFmpeg's FLV
muxer puts H.264 into AVCC framing and AAC into raw frames, whatever the source used).
It runs in its own process because FFmpeg's network I/O holds the GIL. Exit status 0:
the source ended; 2: it could not be opened or read (the message on stderr).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import av

log = logging.getLogger(__name__)

_VIDEO = ("h264", "hevc", "av1")
_AUDIO = ("aac", "mp3", "opus")


def _options(url: str) -> dict[str, str]:
    if url.startswith("rtsp://"):
        return {"rtsp_transport": "tcp", "timeout": "10000000"}
    return {"rw_timeout": "10000000"}


def remux(url: str, out_file: Any) -> int:
    """Packets of ``url`` to FLV on ``out_file``; the number of packets written."""
    source = av.open(url, options=_options(url), timeout=10.0)
    try:
        video = [s for s in source.streams.video if s.codec_context.name in _VIDEO][:1]
        audio = [s for s in source.streams.audio if s.codec_context.name in _AUDIO][:1]
        picked: list[av.stream.Stream] = [*video, *audio]
        if not picked:
            raise ValueError("the source has no H.264/HEVC/AV1 video nor AAC/MP3/Opus audio")
        out = av.open(out_file, "w", format="flv")
        try:
            mapping = {s.index: out.add_stream_from_template(s) for s in picked}
            written = 0
            held: dict[int, list[Any]] = {}
            for packet in source.demux(picked):
                if packet.size == 0:
                    continue
                index = packet.stream.index
                if packet.dts is None and packet.pts is None:
                    # RTSP's first packets come before the first RTP timestamp is known: they
                    # go out just before the next packet that has one.
                    held.setdefault(index, []).append(packet)
                    continue
                dts = packet.dts if packet.dts is not None else packet.pts
                packet.dts = dts
                for early in held.pop(index, []):
                    early.dts = early.pts = (dts or 0) - 1
                    early.stream = mapping[index]
                    out.mux(early)
                    written += 1
                packet.stream = mapping[index]
                out.mux(packet)
                written += 1
            return written
        finally:
            out.close()
    finally:
        source.close()


def main() -> None:
    url = sys.stdin.readline().strip()
    if not url:
        print("usage: echo URL | python -m livecast.relay.pull_worker", file=sys.stderr)
        sys.exit(2)
    try:
        remux(url, sys.stdout.buffer)
    except (av.FFmpegError, OSError, ValueError) as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
