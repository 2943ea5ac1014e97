"""The thumbnail worker process: one H.264 keyframe in, one JPEG (at most ``max_width`` wide) out.

Run as ``python -m livecast.transcode.thumbworker '{"max_width": 640}'``; for each
CONFIG (avcC) + VIDEO (a keyframe) pair on stdin it writes one PACKET with the JPEG (empty
if the keyframe did not decode).
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from typing import Any, BinaryIO

import av

from livecast.transcode import wire
from livecast.transcode.ladder import even


def jpeg(avcc: bytes, keyframe: bytes, max_width: int) -> bytes:
    decoder: Any = av.CodecContext.create("h264", "r")
    decoder.extradata = avcc
    frames = list(decoder.decode(av.Packet(keyframe))) + list(decoder.decode(None))
    if not frames:
        return b""
    frame = frames[0]
    width, height = frame.width, frame.height
    if width > max_width:
        width, height = even(max_width), even(height * max_width / width)
    encoder: Any = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": "2", "qmax": "6"}
    encoder.open()
    out = frame.reformat(width=width, height=height, format="yuvj420p")
    return b"".join(bytes(p) for p in encoder.encode(out) + encoder.encode(None))


def serve(stdin: BinaryIO, stdout: BinaryIO, max_width: int) -> None:
    avcc = b""
    while (msg := wire.read_message(stdin)) is not None:
        if msg.kind == wire.CONFIG:
            avcc = msg.payload
        elif msg.kind == wire.VIDEO:
            try:
                data = jpeg(avcc, msg.payload, max_width)
            except (av.FFmpegError, ValueError):
                data = b""
            stdout.write(wire.pack(wire.PACKET, data))
            stdout.flush()
        elif msg.kind == wire.END:
            return


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, int(json.loads(sys.argv[1])["max_width"]))
