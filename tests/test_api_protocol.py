"""HTTP protocol limits: slow request headers and idle keep-alive connections are closed
after ``server.keepalive_timeout``, over-long header lines are refused, and a malformed
request writes one short log line, not a traceback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.procs import NodeProcess, node_sections


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True if the server closes the connection (EOF or reset) within ``seconds``."""
    try:
        while True:
            if not await asyncio.wait_for(reader.read(4096), seconds):
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.slow
async def test_slow_request_headers_are_cut_off(node_factory: Any) -> None:
    node = await node_factory(server={"keepalive_timeout": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", node.node.http_port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for i in range(40):  # one header byte every 0.2 s: 8 s if never cut off
        try:
            writer.write(b"X-Slow: " if i == 0 else b"a")
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if await _closed_within(reader, 0.2):
            closed = True
            break
    writer.close()
    assert closed, "a client trickling its headers was never disconnected"
    assert time.monotonic() - started < 6
    # the server is fine, and an idle keep-alive connection is closed as well
    async with node.http.get(node.url("/healthz")) as r:
        assert r.status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", node.node.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await _closed_within(reader, 5)
    writer.close()


async def test_header_limits_are_settings(node_factory: Any) -> None:
    node = await node_factory(server={"max_field_size": 512, "max_headers": 10})
    async with node.http.get(node.url("/healthz"), headers={"X-Long": "a" * 400}) as r:
        assert r.status == 200
    async with node.http.get(node.url("/healthz"), headers={"X-Long": "a" * 2000}) as r:
        assert r.status in (400, 431)
    async with node.http.get(node.url("/healthz"), headers={f"X-H{i}": "1" for i in range(20)}) as r:
        assert r.status in (400, 431)
    async with node.http.get(node.url("/healthz")) as r:
        assert r.status == 200


async def test_a_malformed_request_logs_one_line_without_traceback(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", node_sections(tmp_path / "node" / "data"))
    await node.start()
    try:
        before = len(node.output)
        bad = b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"  # 44 bytes, no colon
        assert len(bad) == 44
        secret = b"GET / HTTP/1.1\r\nAuthorization Bearer lc_SECRETTOKEN\r\n\r\n"  # no colon either
        for request in (bad, bad, secret):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)
            writer.write(request)
            response = await asyncio.wait_for(reader.read(4096), 5)
            assert response.split(b" ")[1] == b"400", response
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)  # a marker request
        writer.write(b"\x16\x03\x01garbage\r\n\r\n")
        await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        await wait_for(lambda: "".join(node.output[before:]).count("malformed HTTP request") >= 3,
                       what="the malformed requests logged")
    finally:
        await node.stop()
    logged = "".join(node.output[before:])
    assert "Traceback" not in logged, logged
    assert "SECRETTOKEN" not in logged and "Bad Header Line" not in logged, logged  # quoted bytes stay out
    lines = [line for line in logged.splitlines() if "malformed HTTP request" in line]
    assert len(lines) == 3, logged  # one per malformed request
    assert all(len(line) < 300 for line in lines), lines
