"""Debian's nginx with the RTMP module (libnginx-mod-rtmp) as its own process, for relay
tests: one ``live`` application that records every stream it receives (``record all``)
to ``<prefix>/rec/<name>.flv``. Fails (does not skip) when nginx or the module is missing."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import av

from procs import free_port, wait_listening

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

CONFIG = """
load_module {module};
worker_processes 1;
error_log {prefix}/error.log info;
events {{ worker_connections 128; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record all;
            record_path {prefix}/rec;
            record_unique off;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if exe is None or not MODULE.exists():
        raise AssertionError("nginx with the RTMP module is needed (apt-get install nginx libnginx-mod-rtmp)")
    return exe


class NginxRtmp:
    def __init__(self) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="livecast-nginx-rtmp-"))
        os.chmod(self.prefix, 0o755)
        (self.prefix / "rec").mkdir()
        os.chmod(self.prefix / "rec", 0o777)  # the workers run as nobody when started as root
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live"

    def recording(self, name: str) -> Path:
        return self.prefix / "rec" / f"{name}.flv"

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self) -> None:
        conf = self.prefix / "nginx.conf"
        conf.write_text(CONFIG.format(module=MODULE, prefix=self.prefix, port=self.port))
        self.proc = await asyncio.create_subprocess_exec(
            nginx_binary(), "-c", str(conf), "-p", f"{self.prefix}/", "-g", f"daemon off; pid {self.prefix}/nginx.pid;",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        if not await wait_listening(self.port, 15.0):
            raise AssertionError(f"nginx-rtmp did not listen on {self.port}: {self.log()}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def count_frames(path: Path) -> tuple[int, int]:
    """(video packets, audio packets) in an FLV file, by PyAV's FLV demuxer."""
    container = av.open(str(path))
    try:
        video = audio = 0
        for pkt in container.demux():
            if pkt.size == 0:
                continue
            if pkt.stream.type == "video":
                video += 1
            elif pkt.stream.type == "audio":
                audio += 1
        return video, audio
    finally:
        container.close()
