"""A 20 s 1080p30 H.264 + AAC stream (~6 Mbps) through the writer: every unit is muxed
(nothing dropped) and segments are cut on schedule. Its cost is measured in bench/mux.py."""

from __future__ import annotations

import pytest

from livecast.config import Settings
from livecast.hls import HlsService
from media_gen import cached_units, shift_units
from livecast.core.media import Track

pytestmark = pytest.mark.slow

SECONDS = 2
REPEATS = 10


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_1080p_stream_muxes_without_drops(container: str) -> None:
    units = cached_units(SECONDS, width=1920, height=1080, bitrate=4_500_000)
    configs = [u for u in units if u.config]
    start = next(u.dts for u in units if u.track is Track.VIDEO and not u.config)
    clip = [u for u in units if not u.config and start <= u.dts < start + SECONDS * 1000]
    settings = Settings()
    settings.hls.container = container
    service = HlsService(settings)
    writer = service.publish_started("big", has_video=True, has_audio=True)
    for unit in configs:
        writer.write(unit)
    for k in range(REPEATS):
        for unit in shift_units(clip, k * SECONDS * 1000):
            writer.write(unit)
    service.publish_stopped("big", writer)
    info = service.info("big")
    assert info is not None and info["segments"] == 6 and info["ended"]
    assert writer.counters == {}
