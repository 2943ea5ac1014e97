"""What the benchmark scripts share: a free port, a ``livecast serve`` child process on
loopback, and waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(data_dir: str, port: int, runner: list[str] | None = None) -> list[str]:
    """``python -m livecast serve`` on 127.0.0.1:``port`` without an RTMP listener."""
    return [sys.executable, *(runner or []), "-m", "livecast", "serve", "--data-dir", data_dir,
            "--host", "127.0.0.1", "--http-port", str(port), "--rtmp-port", "0"]


def spawn_server(cwd: Path, env: Mapping[str, str], data_dir: str, port: int, *,
                 runner: list[str] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start a node with ``env`` (LIVECAST_CONFIG is never inherited)."""
    env = {k: v for k, v in env.items() if k != "LIVECAST_CONFIG"}
    return subprocess.Popen(serve_command(data_dir, port, runner), env=env, stdout=subprocess.DEVNULL,
                            cwd=cwd, preexec_fn=preexec_fn)  # noqa: PLW1509 (raises a limit only)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0, path: str = "/readyz") -> None:
    """Return once ``base + path`` answers 200; exit the script if the server dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + path, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not become ready")
