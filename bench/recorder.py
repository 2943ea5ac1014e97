"""The recorder alone: CPU per stored segment (disk and S3), in one process, no ingest.

Feeds the real ``Recorder`` (real SQLite index, real disk or a local SeaweedFS) 1.5 MB
MPEG-TS-sized segments, back to back (``--gap 0``: a backlog, as when the ingest bench pushes
faster than real time) and spaced (``--gap 0.1``: threads idle between segments, as in real
time), and prints the process's CPU time per segment for each, every round and the median.
Run it with PYTHONPATH pointing at the tree to measure (compare two trees back to back):

    cd bench && PYTHONPATH=/path/to/tree python recorder.py --rounds 3

Not a test: it explains the ``--record`` figures of ingest.py (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from livecast.config import load_settings
from livecast.hls.segmenter import Segment
from livecast.recording.component import make_storage
from livecast.recording.recorder import Recorder
from livecast.storage.recordings import RecordingRepository
from livecast.storage.sqlite import SqliteDatabase

SEGMENT_BYTES = 1_500_000  # 2 s of the ingest bench's 6 Mbit/s clip


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_segment(storage: str, endpoint: str, segments: int, gap: float) -> tuple[float, float]:
    """CPU milliseconds per segment stored and indexed, and the event loop's thread's share."""
    root = Path(tempfile.mkdtemp(prefix="lcrec-", dir=os.environ.get("BENCH_TMP")))
    db = SqliteDatabase(root / "livecast.db")
    await db.open()
    try:
        await db.execute("INSERT INTO users (username, password_hash, role, created_at)"
                         " VALUES ('bench', 'x', 'streamer', '2026-01-01')")
        await db.execute("INSERT INTO rooms (slug, owner_id, title, stream_key, stream_key_hash, created_at)"
                         " VALUES ('bench', 1, 'bench', 'k', 'h', '2026-01-01')")
        env = {"LIVECAST_RECORDING_ENABLED": "true", "LIVECAST_RECORDING_MIN_FREE_BYTES": "0",
               "LIVECAST_SERVER_DATA_DIR": str(root)}
        if storage == "s3":
            env |= {"LIVECAST_RECORDING_STORAGE": "s3://bench/recorder", "LIVECAST_S3_ENDPOINT": endpoint}
        settings = load_settings(None, environ=env)
        recorder = Recorder(settings.recording, make_storage(settings), RecordingRepository(db))
        data = os.urandom(SEGMENT_BYTES)

        def offer(i: int) -> None:
            recorder.segment("bench", "p", Segment("mpegts", data, 2.0, i * 180_000, time.time(), False, None, 0))

        async def stored(n: int) -> None:
            while recorder.stats.segments_stored < n:
                await asyncio.sleep(0.002)

        offer(0)  # opens the recording, the storage client, the directory
        await stored(1)
        start, loop_start = cpu_seconds(), time.thread_time()
        for i in range(1, segments + 1):
            offer(i)
            if gap:
                await asyncio.sleep(gap)
        await stored(segments + 1)
        used = cpu_seconds() - start
        loop_share = (time.thread_time() - loop_start) / used
        recorder.ended("bench", "p")
        await recorder.close()
        return used / segments * 1000, loop_share
    finally:
        await db.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--segments", type=int, default=25, help="per measurement (at most queue_segments - 1)")
    ap.add_argument("--no-s3", action="store_true", help="disk only (no SeaweedFS)")
    args = ap.parse_args()
    weed = None
    if not args.no_s3:
        from seaweed import SeaweedFS

        weed = SeaweedFS()
    cases = [(s, g) for s in (["disk"] if weed is None else ["disk", "s3"]) for g in (0.0, 0.1)]
    figures: dict[tuple[str, float], list[float]] = {case: [] for case in cases}
    try:
        for round_ in range(1, args.rounds + 1):
            shares = []
            for storage, gap in cases:
                ms, share = asyncio.run(per_segment(storage, weed.endpoint if weed else "", args.segments, gap))
                figures[(storage, gap)].append(ms)
                shares.append(share)
            print(f"round {round_}: " + "; ".join(f"{s} gap {g}: {v[-1]:.2f}" for (s, g), v in figures.items())
                  + " ms CPU per segment (event loop's share: "
                  + ", ".join(f"{share:.0%}" for share in shares) + ")")
    finally:
        if weed is not None:
            weed.stop()
    for (storage, gap), values in figures.items():
        print(f"{storage:4s} {'back to back' if not gap else f'{gap} s apart':12s} median "
              f"{statistics.median(values):.2f} ms CPU per {SEGMENT_BYTES / 1e6:.1f} MB segment "
              f"(all: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
