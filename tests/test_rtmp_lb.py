"""conf/nginx-rtmp-lb.conf (the very file, its CHANGE ME values rendered) as a TCP load
balancer in front of two origins' RTMP ports: a publish through it reaches an origin;
that origin is SIGKILLed, and the encoder's reconnect through the same address reaches
the other one, which continues the room's playlist."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from helpers import make_room, segment_uris, wait_playlist
from pg import PgCluster
from procs import free_port, wait_listening
from publisher import start_publisher
from test_cluster_failover import FPS, HLS, LEASE, discontinuities_before, sequences
from test_nginx_cache import nginx_binary

CONF = Path(__file__).resolve().parent.parent / "conf" / "nginx-rtmp-lb.conf"


def render(port: int, upstreams: list[int]) -> str:
    text = CONF.read_text()
    text, listens = re.subn(r"^(\s*)listen 1934;", rf"\g<1>listen 127.0.0.1:{port};", text, flags=re.M)
    lines = iter(upstreams)
    text, servers = re.subn(r"^(\s*)server 127\.0\.0\.1:\d+ ", lambda m: f"{m.group(1)}server 127.0.0.1:{next(lines)} ",
                            text, flags=re.M)
    assert listens == 1 and servers == 2, (listens, servers)
    return text


async def test_encoder_reconnect_through_the_balancer_reaches_a_live_origin(cluster: Any,
                                                                           pg_server: PgCluster) -> None:
    redis = await cluster.redis()
    url = pg_server.url(await pg_server.create_database("lb"))
    sections = {"database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": LEASE}, "hls": HLS}
    origins = [await cluster.node("a", **sections), await cluster.node("b", **sections)]
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="livecast-lb-"))
    os.chmod(prefix, 0o755)
    (prefix / "nginx.conf").write_text(render(port, [o.rtmp_port for o in origins]))
    nginx = await asyncio.create_subprocess_exec(
        nginx_binary(), "-c", str(prefix / "nginx.conf"), "-p", f"{prefix}/", "-g",
        f"daemon off; pid {prefix}/nginx.pid;", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert await wait_listening(port, 15.0), (prefix / "error.log").read_text(errors="replace")
        room = await make_room(origins[0])
        slug = room["slug"]
        lb_url = f"rtmp://127.0.0.1:{port}/live/{room['stream_key']}"
        first = await start_publisher(lb_url, seconds=60.0, fps=FPS, gop=FPS, realtime=True)
        try:
            async def live_on() -> Any:
                while True:
                    for origin in origins:
                        async with origin.http.get(origin.url(f"/api/v1/rooms/{slug}")) as r:
                            if (await r.json())["room"]["stream"] is not None:  # its own publisher
                                return origin
                    await asyncio.sleep(0.1)

            holder = await asyncio.wait_for(live_on(), 20)
            other = origins[1 - origins.index(holder)]
            before = await wait_playlist(holder, slug, lambda t: len(segment_uris(t)) >= 2)
            await holder.kill()
        finally:
            await first.stop()
        second = await start_publisher(lb_url, seconds=4.0, fps=FPS, gop=FPS, realtime=True)
        after = await wait_playlist(other, slug, lambda t: bool(discontinuities_before(t)) and
                                    len(segment_uris(t)) >= 2, timeout=30)
        await second.result()
        assert min(sequences(after)) > max(sequences(before))
        assert f"127.0.0.1:{other.rtmp_port}" in (prefix / "access.log").read_text()
    finally:
        if nginx.returncode is None:
            nginx.send_signal(signal.SIGQUIT)
            await asyncio.wait_for(nginx.wait(), 10)
        shutil.rmtree(prefix, ignore_errors=True)
