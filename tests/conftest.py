"""Shared fixtures: a real LiveCast node on ephemeral ports with a real SQLite file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecast.config import Settings, load_settings
from livecast.server import RunningNode, start_node

# Test modules that touch the database run twice: on SQLite and on PostgreSQL (one shared
# PostgreSQL cluster per session, one database per test). `--db sqlite` or `--db postgresql`
# runs one backend only.
DB_MODULES = frozenset({
    "test_api_auth", "test_api_rooms", "test_api_admin", "test_api_roles", "test_api_lists",
    "test_chat_gifts", "test_chat_moderation", "test_chat_retention", "test_cli",
})

# Tests use a cheap bcrypt cost; production defaults to 12.
TEST_BCRYPT_ROUNDS = 4
# Tests register and log in many users from 127.0.0.1; tests of these limits set them low.
TEST_AUTH_LIMITS = {"register_per_address": 10_000, "login_requests_per_client": 10_000}


def make_settings(data_dir: Path, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "http_port": 0, "rtmp_port": 0, "data_dir": str(data_dir), "uvloop": False},
        "auth": {"bcrypt_rounds": TEST_BCRYPT_ROUNDS, **TEST_AUTH_LIMITS},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    return load_settings(None, environ=env, overrides=overrides)


class Node:
    """A started node plus an HTTP client session pointed at it."""

    def __init__(self, node: RunningNode, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.node = node
        self.settings = settings
        self.http = session
        self.stopped = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.node.http_port}"

    def url(self, path: str) -> str:
        return self.base + path

    async def stop(self) -> None:
        """Stop the node (idempotent), e.g. to restart on the same data directory."""
        if not self.http.closed:
            await self.http.close()
        if not self.stopped:
            self.stopped = True
            await self.node.stop()

    @property
    def rtmp_port(self) -> int:
        port = self.node.rtmp_port
        assert port is not None
        return port


NodeFactory = Callable[..., Any]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("both", "sqlite", "postgresql"), default="both",
                     help="database backends for the database test modules (default: both)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    choice = metafunc.config.getoption("--db")
    backends = ["sqlite", "postgresql"] if choice == "both" else [choice]
    if module not in DB_MODULES or metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ["sqlite"]
    if backends != ["sqlite"]:
        # the PostgreSQL runs start a cluster and a database per test: part of the slow set
        params = [pytest.param(b, marks=pytest.mark.slow) if b == "postgresql" else b for b in backends]
        metafunc.parametrize("db_backend", params, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One PostgreSQL 15 cluster for the session (started on first use)."""
    from pg import PgCluster

    server = PgCluster()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """"sqlite" (the default) or "postgresql" (database modules, parametrised)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def database_section(request: pytest.FixtureRequest, db_backend: str) -> dict[str, Any]:
    """The ``[database]`` settings of this test's nodes: {} (SQLite) or a fresh PostgreSQL database."""
    if db_backend != "postgresql":
        return {}
    server = request.getfixturevalue("pg_server")
    return {"url": server.url(await server.create_database())}


@pytest.fixture
async def node_factory(tmp_path: Path, database_section: dict[str, Any]) -> AsyncIterator[NodeFactory]:
    started: list[Node] = []

    async def factory(data_dir: Path | None = None, **sections: dict[str, Any]) -> Node:
        if database_section and "database" not in sections:
            sections["database"] = database_section
        settings = make_settings(data_dir or tmp_path / "data", **sections)
        running = await start_node(settings)
        session = aiohttp.ClientSession()
        node = Node(running, settings, session)
        started.append(node)
        return node

    yield factory
    for node in reversed(started):
        await node.stop()


@pytest.fixture
async def node(node_factory: NodeFactory) -> Node:
    return await node_factory()


class Cluster:
    """Factory for separate-process nodes (and redis-server), all stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.nodes: list[Any] = []
        self.redis_servers: list[Any] = []

    async def node(self, name: str, role: str = "origin", origin: Any = None, **sections: dict[str, Any]) -> Any:
        from procs import NodeProcess, node_sections

        origin_url = origin.base if origin is not None else ""
        data = self.tmp_path / name / "data"
        proc = NodeProcess(self.tmp_path / name, node_sections(data, role, origin_url, **sections))
        proc.http = aiohttp.ClientSession()  # type: ignore[attr-defined]
        self.nodes.append(proc)
        await proc.start()
        return proc

    async def redis(self) -> Any:
        from procs import RedisProcess

        server = RedisProcess(self.tmp_path / f"redis{len(self.redis_servers)}")
        self.redis_servers.append(server)
        await server.start()
        return server

    async def close(self) -> None:
        for proc in reversed(self.nodes):
            await proc.http.close()
            await proc.stop()
        for server in self.redis_servers:
            await server.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    await c.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts nodes as separate OS processes is slow, wherever it lives."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)
