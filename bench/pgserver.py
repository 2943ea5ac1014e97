"""A throw-away PostgreSQL 15 cluster for benchmarks (run as root: initdb runs as the
``postgres`` OS user), on a free loopback port, removed on exit."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchnode import free_port

PG_BIN = Path(os.environ.get("LIVECAST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60)


class PgServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="livecast-bench-pg-"))
        self.port = free_port()

    def start(self) -> None:
        owner = pwd.getpwnam("postgres")
        os.chown(self.base, owner.pw_uid, owner.pw_gid)
        data = self.base / "data"
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        # Durable commits (fsync on): the figures are what a real deployment pays.
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.base / "log"), "start",
                     "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1")

    def create_database(self, name: str) -> str:
        """A new database; its URL."""
        _as_postgres(str(PG_BIN / "createdb"), "-h", str(self.base), "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
