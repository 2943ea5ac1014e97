"""Scale benchmark: N real-time 6 Mbit/s publishers into one LiveCast process on one core.

The server runs in this process, pinned to CPU 0 (uvloop). A pusher process pinned to
CPU 1 opens N RTMP connections and sends the 1080p30 clip of bench/ingest.py to each at
real-time pace (staggered starts), recording when it sent the last message before every
video keyframe and the keyframe itself. The server side records, through the HLS service's
change listener, when each segment appears in its playlist. Reported: the delay from a
segment's last packet being sent to the segment being listed (p50/p99/max); the same from
the keyframe that ends the segment (the server cannot cut before it has it, so this is the
server's own part, without the clip's pacing gap or the pusher's own lateness); how far
behind schedule any publisher fell; and the server's CPU share.

    python bench/scale.py --publishers 100 --seconds 40
    python bench/scale.py --publishers 100 --seconds 30 --before /tmp/before --rounds 3
    python bench/scale.py --publishers 100 --seconds 58 --warmup 30 --before /tmp/before --rounds 3

``--warmup S`` leaves out the segments ended in the first S seconds (and the CPU spent
then): while every room's window of segments fills, each segment is new memory, which
costs page faults a server past its first half-minute no longer pays.

``--before TREE`` runs the server of another checkout (``git archive <commit> | tar -x -C
TREE``) and of this tree in turn, ``--rounds`` times each (A, B, A, B, ...), each in a
fresh process, and prints every figure and the medians.

Not a test: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402

try:
    from livecast.rtmp.amf import decode_values, encode_values
    from livecast.rtmp.chunks import ChunkReader, ChunkWriter, RtmpMessage
except ImportError:  # a checkout from before #14 (``--before``)
    from livecast.ingest.amf import decode_values, encode_values  # type: ignore[no-redef]
    from livecast.ingest.chunks import ChunkReader, ChunkWriter, RtmpMessage  # type: ignore[no-redef]

HANDSHAKE = 1536
CHUNK = 4096


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp ms, body) for every audio/video tag of an FLV file."""
    pos, tags = 13, []
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11:pos + 11 + size]
        if kind in (8, 9):
            tags.append((kind, ts, body))
        pos += 11 + size + 4
    return tags


def command(writer: ChunkWriter, name: str, txid: float, *args: object, stream_id: int = 0) -> bytes:
    payload = encode_values([name, txid, *args])
    return writer.write(RtmpMessage(3, 20, stream_id, 0, payload))


# -- the pusher (child process) ----------------------------------------------------------

async def push_one(port: int, key: str, messages: list[bytes], times: list[float], key_before: list[int],
                   delay: float, seconds: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + bytes(HANDSHAKE))
    s0s1s2 = await reader.readexactly(1 + 2 * HANDSHAKE)
    writer.write(s0s1s2[1:1 + HANDSHAKE])
    cw = ChunkWriter()
    set_size = cw.write(RtmpMessage(2, 1, 0, 0, CHUNK.to_bytes(4, "big")))
    cw.chunk_size = CHUNK
    writer.write(set_size)
    writer.write(command(cw, "connect", 1, {"app": "live", "tcUrl": f"rtmp://127.0.0.1:{port}/live"}))
    writer.write(command(cw, "createStream", 2, None))
    writer.write(command(cw, "publish", 3, None, key, "live", stream_id=1))
    parser = ChunkReader(max_chunk_size=0x7FFFFFFF)
    started = False
    while not started:
        data = await reader.read(65536)
        if not data:
            raise RuntimeError("server closed before publish started")
        for msg in parser.feed(data):
            if msg.type_id == 20:
                values = decode_values(msg.payload)
                if values and values[0] == "onStatus":
                    code = values[3]["code"]  # type: ignore[index]
                    if code != "NetStream.Publish.Start":
                        raise RuntimeError(code)
                    started = True

    async def drain_incoming() -> None:  # acks etc.; never let our receive buffer fill
        while await reader.read(65536):
            pass

    sink = asyncio.create_task(drain_incoming())
    await asyncio.sleep(delay)
    start = time.time()
    sent_before_key: list[float] = []
    sent_key: list[float] = []  # when each keyframe itself was written (the pusher may pause between)
    lateness = 0.0
    for i, chunk in enumerate(messages):
        if times[i] > seconds:
            break
        target = start + times[i]
        now = time.time()
        if target > now:
            await asyncio.sleep(target - now)
        else:
            lateness = max(lateness, now - target)
        writer.write(chunk)
        if key_before[i]:
            sent_before_key.append(time.time())
        elif i and key_before[i - 1]:
            sent_key.append(time.time())
        if writer.transport.get_write_buffer_size() > 4 * 1024 * 1024:
            await writer.drain()
    writer.close()
    sink.cancel()
    out[key] = {"sent_before_key": sent_before_key, "sent_key": sent_key, "lateness": lateness}


async def pusher(port: int, keys: list[str], clip: str, seconds: float, result_path: str) -> None:
    tags = flv_tags(Path(clip).read_bytes())
    cw = ChunkWriter(CHUNK)
    messages, times, key_before = [], [], []
    for i, (kind, ts, body) in enumerate(tags):
        csid = 6 if kind == 9 else 4
        messages.append(cw.write(RtmpMessage(csid, kind, 1, ts, body)))
        times.append(ts / 1000.0)
        nxt = tags[i + 1] if i + 1 < len(tags) else None
        # this message is the last one before a video keyframe (a segment's last packet)
        key_before.append(int(nxt is not None and nxt[0] == 9 and (nxt[2][0] >> 4) == 1 and nxt[2][1] == 1))
    out: dict = {}
    rng = random.Random(1)
    await asyncio.gather(*[
        push_one(port, key, messages, times, key_before, rng.uniform(0, 2.0), seconds, out) for key in keys
    ])
    Path(result_path).write_text(json.dumps(out))


# -- the server (this process) -----------------------------------------------------------

async def run_server(args: argparse.Namespace) -> None:
    from livecast.config import load_settings
    from livecast.ingest.component import HLS
    from livecast.keys import ROOMS, USERS
    from livecast.server import start_node

    tmp = tempfile.mkdtemp(prefix="lcscale-")
    settings = load_settings(None, environ={}, overrides={
        "server": {"host": "127.0.0.1", "http_port": 0, "rtmp_port": 0, "data_dir": tmp},
        "auth": {"bcrypt_rounds": 4},
        "log": {"level": "warning"},
        # the clip has a 2.0 s GOP: cut at every keyframe
        "hls": {"segment_duration": 1.9, "max_total_bytes": 8 * 1024**3},
        # every pusher connection comes from 127.0.0.1: lift #13's per-address pending cap
        "ingest": {"max_publishers": args.publishers + 10, "max_pending": max(256, args.publishers + 10),
                   "max_pending_per_address": max(256, args.publishers + 10)},
    })
    if hasattr(settings, "transcode") and not args.thumbnails:
        # Live thumbnails (a later feature) decode a keyframe per room every 10 s in a worker
        # process that inherits this process's pinning to CPU 0: off unless --thumbnails.
        settings.transcode.thumbnail_interval = 0
    from livecast.logs import setup_logging

    setup_logging(settings.log)
    node = await start_node(settings)
    try:
        from livecast.server import settle_heap
    except ImportError:  # a checkout from before it (``--before``)
        pass
    else:
        settle_heap()  # what ``livecast serve`` does once the node is up
    app = node.app
    users, rooms = app[USERS], app[ROOMS]
    owner = await users.create_user("scale", "scale-benchmark", role="streamer")
    made = [await rooms.create(owner, f"scale {i}") for i in range(args.publishers)]
    key_to_slug = {r.stream_key: r.slug for r in made}
    listed: dict[str, list[float]] = {r.slug: [] for r in made}
    counts: dict[str, int] = {}
    hls = app[HLS]

    def on_change(slug: str) -> None:
        info = hls.info(slug)
        if not info or slug not in listed:
            return
        total = info["media_sequence"] + info["segments"]
        now = time.time()
        for _ in range(counts.get(slug, 0), total):
            listed[slug].append(now)
        counts[slug] = total

    hls.add_listener(on_change)
    clip = ingest.CACHE / "clip-1080p30-6M-60s.flv"
    ingest.make_clip(clip, 60)
    result_path = Path(tmp) / "pusher.json"
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", sys.executable, __file__, "--push", str(node.rtmp_port),
        ",".join(key_to_slug), str(clip), str(args.seconds), str(result_path),
    )
    if args.warmup:  # CPU from the end of the warm-up on
        await asyncio.sleep(args.warmup)
        cpu0, wall0 = time.process_time(), time.monotonic()
    await proc.wait()
    await asyncio.sleep(1.0)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    await node.stop()
    if proc.returncode != 0:
        raise SystemExit("pusher failed")
    pushed = json.loads(result_path.read_text())
    delays, from_key = [], []
    for key, rec in pushed.items():
        slug = key_to_slug[key]
        sent, sent_key = rec["sent_before_key"], rec["sent_key"]
        # sent[j] precedes keyframe j; keyframe 0 opens segment 0, so segment k's last
        # packet is the message sent just before keyframe k+1, and keyframe k+1 (which ends
        # the segment: the server cannot cut before it arrives) was written at sent_key[k+1]
        for k, listed_at in enumerate(listed[slug]):
            if k + 1 < len(sent_key) and sent_key[k + 1] < started + args.warmup:
                continue  # the keyframe ending it was sent during the warm-up
            if k + 1 < len(sent):
                delays.append((listed_at - sent[k + 1]) * 1000)
            if k + 1 < len(sent_key):
                from_key.append((listed_at - sent_key[k + 1]) * 1000)
    delays.sort()
    from_key.sort()
    qk = statistics.quantiles(from_key, n=100, method="inclusive")
    late = max(r["lateness"] for r in pushed.values())
    q = statistics.quantiles(delays, n=100, method="inclusive")
    print(f"{args.publishers} publishers x {args.seconds:.0f} s of 1080p30 6 Mbit/s in real time; "
          f"server pinned to 1 core; live thumbnails {'on' if args.thumbnails else 'off'}"
          + (f"; counted after a {args.warmup:.0f} s warm-up" if args.warmup else ""))
    print(f"segments listed: {len(delays)}; listing delay after the segment's last packet: "
          f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {delays[-1]:.1f} ms")
    print(f"the same after the keyframe that ends the segment was written (the server's own part): "
          f"p50 {qk[49]:.1f} ms, p99 {qk[98]:.1f} ms, max {from_key[-1]:.1f} ms")
    print(f"server CPU {cpu:.1f} s over {wall:.1f} s = {100 * cpu / wall:.0f} % of one core; "
          f"most a publisher fell behind schedule: {late * 1000:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "segments": len(delays), "p50_ms": q[49], "p99_ms": q[98], "max_ms": delays[-1],
            "cpu_pct": 100 * cpu / wall, "late_ms": late * 1000,
            "key_p50_ms": qk[49], "key_p99_ms": qk[98], "key_max_ms": from_key[-1],
        }))


def compare_trees(args: argparse.Namespace) -> None:
    """The server of ``args.before`` and of this tree, one fresh process per round each."""
    trees = {"before": args.before.resolve(), "after": HERE.parent.resolve()}
    print(f"{args.publishers} publishers x {args.seconds:.0f} s (warm-up {args.warmup:.0f} s), {args.rounds} rounds, "
          f"live thumbnails {'on' if args.thumbnails else 'off'}; "
          f"before = {trees['before']}, after = {trees['after']}")
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    keys = ("p50_ms", "p99_ms", "max_ms", "cpu_pct", "late_ms", "key_p50_ms", "key_p99_ms", "key_max_ms")
    for rnd in range(args.rounds):
        for name, tree in trees.items():
            out = Path(tempfile.mkdtemp(prefix="lcscale-cmp-")) / "result.json"
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH"))
                                                              if p))
            subprocess.run([sys.executable, __file__, "--publishers", str(args.publishers),
                            "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--json", str(out),
                            *(["--thumbnails"] if args.thumbnails else [])],
                           env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL)
            r = json.loads(out.read_text())
            rows[name].append(r)
            print(f"round {rnd + 1} {name:6s}: listing delay p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} / "
                  f"max {r['max_ms']:.1f} ms (after the keyframe {r['key_p50_ms']:.1f} / {r['key_p99_ms']:.1f} / "
                  f"{r['key_max_ms']:.1f} ms); server CPU {r['cpu_pct']:.0f} %; "
                  f"most behind {r['late_ms']:.0f} ms", flush=True)
    for name, rs in rows.items():
        m = {k: statistics.median(r[k] for r in rs) for k in keys}
        print(f"{name:6s} median: listing delay p50 {m['p50_ms']:.1f} / p99 {m['p99_ms']:.1f} / "
              f"max {m['max_ms']:.1f} ms (after the keyframe {m['key_p50_ms']:.1f} / {m['key_p99_ms']:.1f} / "
              f"{m['key_max_ms']:.1f} ms); server CPU {m['cpu_pct']:.0f} %; most behind {m['late_ms']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=0,
                    help="count only segments ended (and CPU spent) after this many seconds: the first "
                         "~25 s fill each room's window of segments, every one in fresh memory")
    ap.add_argument("--push", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)  # where a comparison round leaves its figures
    ap.add_argument("--before", type=Path, metavar="TREE", help="compare with the server of another checkout")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: rounds of each")
    ap.add_argument("--thumbnails", action="store_true", help="keep live thumbnails on (a worker on CPU 0)")
    args = ap.parse_args()
    if args.push:
        port, keys, clip, seconds, out = args.push
        asyncio.run(pusher(int(port), keys.split(","), clip, float(seconds), out))
        return
    if args.before:
        compare_trees(args)
        return
    os.sched_setaffinity(0, {0})
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_server(args))


if __name__ == "__main__":
    main()
