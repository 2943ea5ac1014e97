"""RTMP partial-message attacks against a server in its own process, whose RSS is read
from /proc: 60 unauthenticated connections (from 60 loopback addresses) keep starting
large messages on many chunk streams and never finish them, reconnecting when closed,
while a real publisher streams. The RSS stays flat and the publisher keeps every frame."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from helpers import make_room, rtmp_url, wait_playlist
from publisher import read_hls_async, start_publisher
from rtmp_attack import crafted_publish, open_rtmp
from rtmp_craft import chunk, set_chunk_size
from test_metrics import scrape, value

MIB = 1024 * 1024
ATTACKERS = 60
SEND_BUDGET = 2 * MIB  # bytes each attacking connection tries to get buffered


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def partial_messages(huge: bool) -> bytes:
    """Chunks starting one message on each of 8 chunk streams, never finishing any:
    16 MiB messages in 64 KiB chunks, or (``huge`` False) 60 kB ones within the pending
    message limit, in 4 KiB chunks."""
    size, length = (65536, 0xFFFFFF - 1) if huge else (4096, 60_000)
    return set_chunk_size(size) + b"".join(
        chunk(0, csid, bytes(size), length=length, type_id=9, stream_id=1) for csid in range(4, 12)
    )


async def attack(node: Any, source: str, huge: bool, stop: asyncio.Event) -> int:
    """Connect, handshake, then push partial messages until closed or SEND_BUDGET is
    sent; again and again until ``stop``. Returns the connections made."""
    made = 0
    while not stop.is_set():
        conn = await open_rtmp(node, source)
        made += 1
        if conn is None:
            await asyncio.sleep(0.2)
            continue
        _, writer = conn
        sent = 0
        size = 65536 if huge else 4096
        continuation = b"".join(chunk(3, csid, bytes(size)) for csid in range(4, 12))
        try:
            writer.write(partial_messages(huge))
            while sent < SEND_BUDGET and not stop.is_set():
                writer.write(continuation)
                sent += len(continuation)
                await asyncio.wait_for(writer.drain(), 2.0)
            with contextlib.suppress(TimeoutError):  # hold what was buffered a while
                await asyncio.wait_for(stop.wait(), 1.0)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
    return made


async def test_rtmp_partial_message_attacks_from_60_connections_keep_rss_growth_under_64_mib_and_a_publisher_keeps_every_segment(  # noqa: E501
    cluster,
) -> None:
    node = await cluster.node("origin", hls={"segment_duration": 1.0, "window": 30})
    assert node.proc is not None
    room = await make_room(node)
    pub = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=10.0, realtime=True)
    await wait_playlist(node, room["slug"], lambda t: ".ts" in t)
    baseline = peak = rss(node.proc.pid)

    stop = asyncio.Event()
    attackers = [asyncio.create_task(attack(node, f"127.0.2.{i + 1}", i % 2 == 0, stop)) for i in range(ATTACKERS)]
    sent_task = asyncio.ensure_future(pub.result())
    while not sent_task.done():
        peak = max(peak, rss(node.proc.pid))
        await asyncio.sleep(0.1)
    stop.set()
    made = sum(await asyncio.gather(*attackers))
    sent = await sent_task

    assert made > ATTACKERS
    assert peak - baseline < 64 * MIB, f"RSS grew by {(peak - baseline) / MIB:.0f} MiB"
    await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames
    # Each refusal is counted, but logged once per address (and reason) per interval.
    families = await scrape(node)
    refused = sum(value(families, "livecast_rtmp_refused_total", reason=r)
                  for r in ("message_size", "partial_streams", "preauth_bytes"))
    assert refused >= made - ATTACKERS
    logged = node.log_text().count("(further ones from 127.0.2.")
    assert 0 < logged <= 2 * ATTACKERS < refused


async def hold_partial_messages(node: Any, key: str) -> None:
    """Publish with ``key``, then start a 16 MiB video message on each of 60 chunk
    streams and feed them round robin in 64 KiB chunks until the server closes."""
    reader, writer = await crafted_publish(node, key)
    writer.write(set_chunk_size(65536))
    writer.write(b"".join(chunk(0, csid, bytes(65536), length=0xFFFFFF, type_id=9, stream_id=1)
                          for csid in range(10, 70)))
    continuation = b"".join(chunk(3, csid, bytes(65536)) for csid in range(10, 70))
    try:
        for _ in range(255):  # up to 60 x 16 MiB
            writer.write(continuation)
            await asyncio.wait_for(writer.drain(), 5.0)
        assert await asyncio.wait_for(reader.read(), 5.0) == b"", "still open"
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_an_authorised_publisher_cannot_hold_60_partial_16_mib_messages_and_the_memory_goes_back(
    cluster,
) -> None:
    node = await cluster.node("origin")
    assert node.proc is not None
    room = await make_room(node)
    baseline = peak = rss(node.proc.pid)
    for _ in range(3):
        attack = asyncio.create_task(hold_partial_messages(node, room["stream_key"]))
        while not attack.done():
            peak = max(peak, rss(node.proc.pid))
            await asyncio.sleep(0.02)
        await attack
    assert peak - baseline < 64 * MIB, f"RSS grew by {(peak - baseline) / MIB:.0f} MiB"
    families = await scrape(node)
    assert value(families, "livecast_rtmp_refused_total", reason="partial_bytes") == 3
    # What they held is handed back to the OS.
    for _ in range(100):
        if rss(node.proc.pid) - baseline < 8 * MIB:
            break
        await asyncio.sleep(0.1)
    assert rss(node.proc.pid) - baseline < 8 * MIB, f"RSS still {(rss(node.proc.pid) - baseline) / MIB:.0f} MiB up"
