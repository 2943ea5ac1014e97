"""A throw-away PostgreSQL 15 cluster for tests: initdb as the ``postgres`` OS user on a
free loopback port with a private socket directory, removed at the end.

One cluster serves a whole test session; each test gets a database of its own
(``create_database``), so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from procs import free_port

PG_BIN = Path(os.environ.get("LIVECAST_PG_BIN", "/usr/lib/postgresql/15/bin"))
_names = itertools.count(1)


def _run_as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60)


class PgCluster:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="livecast-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.started = False

    @property
    def host(self) -> str:
        return str(self.base)

    def url(self, database: str) -> str:
        """A TCP URL with a password (trust auth ignores it; it must never appear in logs)."""
        return f"postgresql://postgres:pg-secret-pw@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({initdb} is missing): apt-get install postgresql")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("there is no 'postgres' OS user to run initdb as: apt-get install postgresql") from None
        os.chown(self.base, owner.pw_uid, owner.pw_gid)
        _run_as_postgres(str(initdb), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.base / "log"),
                         "start", "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
                         " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self.started = True

    def pause(self) -> None:
        """Stop the server, keeping its data (``resume`` starts it again on the same port).
        A fast shutdown: connections are cut, and commits (asynchronous here) are kept."""
        _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.base / "log"),
                         "start", "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        if self.started:
            self.started = False
            _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(host=self.host, port=self.port, user="postgres", database=database)

    async def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        admin = await self.connect()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return name
