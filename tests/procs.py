"""Nodes, redis-server and nginx as separate OS processes on loopback, for cluster tests.

``spawn_node`` runs ``python -m livecast serve`` with a generated TOML file and reads
the bound ports from its banner; ``stop``/``kill`` end it (SIGTERM or SIGKILL) and
``restart`` starts it again on the same ports and data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SECRET = "test-cluster-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:``port`` (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.05)
    return False


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (e.g. one [[transcode.renditions]] entry)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


class NodeProcess:
    """One ``livecast serve`` child process."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]]) -> None:
        self.workdir = workdir
        self.sections = sections
        self.proc: asyncio.subprocess.Process | None = None
        self.http_port = 0
        self.rtmp_port: int | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def role(self) -> str:
        return str(self.sections["server"].get("role", "origin"))

    async def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "livecast.toml"
        write_config(config, self.sections)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast", "serve", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(self.workdir),
        )
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(ready))
        try:
            await asyncio.wait_for(ready, timeout)
        except (asyncio.TimeoutError, RuntimeError) as err:
            raise RuntimeError(f"node did not start: {err}\n" + "".join(self.output[-40:])) from None
        # Later starts (restarts) reuse the bound ports.
        self.sections["server"]["http_port"] = self.http_port
        if self.rtmp_port is not None:
            self.sections["server"]["rtmp_port"] = self.rtmp_port

    async def _read(self, ready: asyncio.Future[None]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode(errors="replace")
            if not line:
                break
            self.output.append(line)
            if len(self.output) > 5000:
                del self.output[:1000]
            if m := re.search(r"Web:\s+https?://[^:/]+:(\d+)/", line):
                self.http_port = int(m.group(1))
            if m := re.search(r"OBS server: rtmp://[^:/]+:(\d+)/", line):
                self.rtmp_port = int(m.group(1))
            if "Stop with Ctrl-C" in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError(f"exited with {await self.proc.wait()}"))

    def log_text(self) -> str:
        return "".join(self.output)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def node_sections(
    data_dir: Path, role: str = "origin", origin: str = "", **extra: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "http_port": 0, "rtmp_port": 0, "data_dir": str(data_dir),
                   "uvloop": False, "role": role},
        "auth": {"bcrypt_rounds": 4, "register_per_address": 10_000, "login_requests_per_client": 10_000},
        "cluster": {"secret": SECRET, "heartbeat_interval": 0.5, "heartbeat_timeout": 2.0},
        "log": {"level": "info"},
    }
    if origin:
        sections["server"]["origin"] = origin
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    return sections


class RedisProcess:
    """A real redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not await wait_listening(self.port, 5.0):
            raise RuntimeError("redis-server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)
