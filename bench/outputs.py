"""Queued-output microbenchmark: CPU per unit of a hub output called directly (muxing on the
read path, as before #14) against a lossless ``QueuedOutput`` with a sync sink (the HLS
output's path), both with a sink that does nothing, so only the hand-over is measured.

``--per-tick`` units are written, then the loop turns (as one ``data_received`` would):
1 is a real-time publisher (one unit per read), 10 a publisher pushing faster than real time.

    python bench/outputs.py --units 200000 --rounds 3

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop

from livecast.core.media import Codec, MediaUnit, Track
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import StreamHub
from livecast.pipeline.outputs import QueuedOutput


class NullSink:
    """Counts units; a sync sink (and a hub output when used directly)."""

    def __init__(self) -> None:
        self.units = 0

    def write(self, unit: MediaUnit) -> None:
        self.units += 1

    def set_metadata(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def make_units(n: int) -> list[MediaUnit]:
    """Video frames of 20 kB and audio packets of 300 bytes, four to one."""
    units = []
    for i in range(n):
        video = i % 5 != 0
        units.append(MediaUnit(Track.VIDEO if video else Track.AUDIO, Codec.H264 if video else Codec.AAC,
                               dts=i * 10, pts=i * 10, keyframe=i % 300 == 0 or not video,
                               payload=b"x" * (20_000 if video else 300)))
    return units


async def run(mode: str, per_tick: int, total: int) -> float:
    """CPU microseconds per unit."""
    hub, tasks, sink = StreamHub(), Supervisor("bench-outputs"), NullSink()
    if mode == "direct":
        hub.add_output_factory(lambda stream: sink)
    else:
        hub.add_output_factory(lambda stream: QueuedOutput(stream, sink, tasks, lossless=True))
    stream, _ = hub.start("bench", "bench")
    units = make_units(per_tick)
    start = time.process_time()
    for _ in range(total // per_tick):
        for unit in units:
            stream.write(unit)
        await asyncio.sleep(0)  # the loop turns: the queued output's batch runs
        await asyncio.sleep(0)
    cpu = time.process_time() - start
    hub.stop(stream)
    await tasks.wait(timeout=5)
    await tasks.close()
    assert sink.units == total // per_tick * per_tick
    return cpu / total * 1e6


async def main(args: argparse.Namespace) -> None:
    for per_tick in (1, 10):
        rows: dict[str, list[float]] = {"direct": [], "queued": []}
        for _ in range(args.rounds):
            for mode, figures in rows.items():
                figures.append(await run(mode, per_tick, args.units))
        direct, queued = (statistics.median(rows[m]) for m in ("direct", "queued"))
        print(f"{per_tick:2d} unit(s) per loop turn: direct {direct:.2f} us/unit "
              f"({', '.join(f'{x:.2f}' for x in rows['direct'])}), queued {queued:.2f} us/unit "
              f"({', '.join(f'{x:.2f}' for x in rows['queued'])}); the queue adds {queued - direct:.2f} us/unit")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(ap.parse_args()))
