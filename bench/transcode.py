"""CPU cost of a transcoding ladder: LiveCast's worker process next to the ffmpeg CLI (issue #17).

A 1080p30 H.264 source (made once with the ffmpeg CLI's testsrc2) is turned into a
720p/480p/360p ladder twice in one run, with the same encoder settings: libx264, the same
preset, bitrates, no B-frames, no scene cuts, keyframes where the source has them, bicubic
scaling, one encoder thread per rendition; the decoder threads as FFmpeg picks for both.

1. LiveCast: ``python -m livecast.transcode.worker`` fed the source's packets over its pipe,
   exactly as the origin feeds it (the packets are read from the file by this script).
2. ffmpeg: one ``ffmpeg`` process decoding once, splitting, scaling and encoding three
   outputs (what Owncast and SRS run per stream), output discarded.

Figures: CPU seconds (user + system of the process, from wait4) per minute of stream, the
ratio LiveCast/ffmpeg (target <= 1.1), speed versus real time (unthrottled), and how many
such ladders one core sustains (60 / CPU-seconds per stream-minute).

    python bench/transcode.py --seconds 20 --preset veryfast
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

from livecast.transcode import wire

LADDER = [("720p", 720, 3_000_000), ("480p", 480, 1_200_000), ("360p", 360, 700_000)]


def make_source(path: Path, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-g", "60",
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def source_messages(path: Path) -> tuple[bytes, float]:
    """The wire messages the origin would send for this file, and its duration."""
    out = [b""]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        out[0] = wire.pack(wire.CONFIG, bytes(stream.codec_context.extradata))
        last = 0
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            pts = int(packet.pts * stream.time_base * 1000)
            dts = int((packet.dts if packet.dts is not None else packet.pts) * stream.time_base * 1000)
            last = max(last, pts)
            out.append(wire.pack(wire.VIDEO, bytes(packet), flags=wire.KEYFRAME if packet.is_keyframe else 0,
                                 pts=pts, dts=dts))
    out.append(wire.pack(wire.END))
    return b"".join(out), last / 1000 + 1 / 30


def run_measured(cmd: list[str], stdin: bytes | None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert proc.stdout is not None
    drained = threading.Thread(target=lambda: proc.stdout.read() if proc.stdout else None)  # never blocks it
    drained.start()
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    drained.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode})")
    return usage.ru_utime + usage.ru_stime, wall


def livecast_cmd(preset: str) -> list[str]:
    job = {"renditions": [{"name": n, "height": h, "video_bitrate": b, "preset": preset} for n, h, b in LADDER],
           "encoder": "libx264", "low_latency": False, "max_lag": 1e9, "source_fps": 30.0, "threads": 1}
    return [sys.executable, "-m", "livecast.transcode.worker", json.dumps(job)]


def ffmpeg_cmd(path: Path, preset: str) -> list[str]:
    split = f"[0:v]split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER)))
    scales = ";".join(f"[s{i}]scale=-2:{h}:flags=bicubic[o{i}]" for i, (_, h, _) in enumerate(LADDER))
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(path), "-filter_complex", f"{split};{scales}"]
    for i, (_, _, bitrate) in enumerate(LADDER):
        cmd += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", preset, "-b:v", str(bitrate), "-bf", "0",
                "-sc_threshold", "0", "-g", "100000", "-force_key_frames", "source", "-threads:v", "1",
                "-f", "null", "-"]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--preset", default="veryfast")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.mp4"
        make_source(source, args.seconds)
        messages, media = source_messages(source)
        results = {
            "livecast": run_measured(livecast_cmd(args.preset), messages),
            "ffmpeg": run_measured(ffmpeg_cmd(source, args.preset), None),
        }
    print(f"1080p30 source, {media:.1f} s; ladder {', '.join(n for n, _, _ in LADDER)}; libx264 preset {args.preset}")
    for name, (cpu, wall) in results.items():
        per_minute = cpu / media * 60
        print(f"{name:9s} CPU {cpu:6.1f} s = {per_minute:6.1f} CPU-s per stream-minute; speed {media / wall:5.2f}x "
              f"real time; {60 / per_minute:4.2f} ladders per core")
    ratio = results["livecast"][0] / results["ffmpeg"][0]
    print(f"LiveCast / ffmpeg CPU: {ratio:.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
