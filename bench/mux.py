"""Cost of HlsService's StreamWriter.write() for a 1080p30 H.264 + AAC stream (~6 Mbps).

    python bench/mux.py

Not a test: prints microseconds per unit and the share of one core, for docs/PERFORMANCE.md;
for MPEG-TS also the cost of carrying continuity counters over (TsContinuity.rewrite) per segment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from media_gen import cached_units, shift_units  # noqa: E402

from livecast.config import Settings  # noqa: E402
from livecast.hls import HlsService  # noqa: E402
from livecast.hls.continuity import TsContinuity  # noqa: E402
from livecast.core.media import MediaUnit, Track  # noqa: E402

SECONDS = 2
REPEATS = 10


def looped_units() -> tuple[list[MediaUnit], list[MediaUnit]]:
    """(configs, 20 s of media): a 2 s 1080p clip repeated with continuing timestamps."""
    units = cached_units(SECONDS, width=1920, height=1080, bitrate=4_500_000)  # x264 overshoots: ~6 Mbps of video
    configs = [u for u in units if u.config]
    start = next(u.dts for u in units if u.track is Track.VIDEO and not u.config)
    clip = [u for u in units if not u.config and start <= u.dts < start + SECONDS * 1000]
    media = [u for k in range(REPEATS) for u in shift_units(clip, k * SECONDS * 1000)]
    return configs, media


def measure(container: str) -> None:
    configs, media = looped_units()
    video_bytes = sum(u.size for u in media if u.track is Track.VIDEO)
    settings = Settings()
    settings.hls.container = container
    service = HlsService(settings)
    writer = service.publish_started("perf", has_video=True, has_audio=True)
    for unit in configs:
        writer.write(unit)
    began = time.perf_counter()
    for unit in media:
        writer.write(unit)
    elapsed = time.perf_counter() - began
    service.publish_stopped("perf", writer)
    if container == "mpegts":
        continuity_cost(service)
    per_unit = elapsed / len(media) * 1e6
    mbps = video_bytes * 8 / (SECONDS * REPEATS) / 1e6
    print(f"{container}: {len(media)} units, video {mbps:.1f} Mbit/s, {per_unit:.1f} us/unit, "
          f"{elapsed / (SECONDS * REPEATS) * 100:.3f}% of one core; dropped {writer.counters or 'none'}")


def continuity_cost(service: HlsService) -> None:
    room = service.room("perf")
    assert room is not None and room.playlist is not None
    segments = [item.data for entry in room.playlist.entries if (item := room.segment(entry.uri)) is not None]
    rewriter = TsContinuity()
    rewriter.rewrite(segments[0], False)
    rounds = 20
    began = time.perf_counter()
    for _ in range(rounds):
        for data in segments[1:]:
            rewriter.rewrite(data, False)
    elapsed = (time.perf_counter() - began) / rounds / (len(segments) - 1)
    packets = sum(len(d) for d in segments[1:]) / 188 / (len(segments) - 1)
    seconds = sum(e.duration for e in room.playlist.entries) / len(segments)
    print(f"mpegts continuity rewrite: {elapsed * 1e6:.0f} us per {seconds:.1f} s segment of {packets:.0f} packets "
          f"({elapsed / packets * 1e9:.0f} ns/packet, {elapsed / seconds * 100:.3f}% of one core)")


if __name__ == "__main__":
    for c in ("mpegts", "fmp4"):
        measure(c)
