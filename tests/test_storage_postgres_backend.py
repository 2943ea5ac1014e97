"""The PostgreSQL backend itself on a real PostgreSQL 15: origins migrating at the same
moment, a schema newer than this LiveCast, an unreachable server, the pool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from pg import PgCluster
from procs import free_port

from livecast.storage.errors import SchemaTooNew, StorageError, UniqueViolation
from livecast.storage.migrations import LATEST
from livecast.storage.postgres import PostgresDatabase, redacted
from livecast.storage.sqlite import SqliteDatabase
from livecast.storage.users import USERNAME_CONSTRAINT, UserRepository


async def test_many_backends_migrating_at_once_apply_each_step_once(pg_server: PgCluster) -> None:
    url = pg_server.url(await pg_server.create_database("mig"))
    dbs = [PostgresDatabase(url, pool_size=2) for _ in range(6)]
    await asyncio.gather(*(db.open() for db in dbs))
    try:
        rows = await dbs[0].fetch_all("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
        # concurrent writers through different pools: constraints settle the race
        repos = [UserRepository(db) for db in dbs]
        results = await asyncio.gather(*(r.insert(f"Name{i % 2}", None, "h", "viewer", 0, "x")
                                         for i, r in enumerate(repos)), return_exceptions=True)
        errors = [e for e in results if isinstance(e, BaseException)]
        assert len(errors) == 4 and all(isinstance(e, UniqueViolation) for e in errors)
        assert {e.constraint for e in errors if isinstance(e, UniqueViolation)} == {USERNAME_CONSTRAINT}
        assert dbs[0].pool_stats()["max"] == 2 and await dbs[0].ping()
    finally:
        await asyncio.gather(*(db.close() for db in dbs))
    assert not await dbs[0].ping()  # closed: a StorageError inside, False outside


async def test_a_newer_schema_is_refused(pg_server: PgCluster) -> None:
    url = pg_server.url(await pg_server.create_database("new"))
    db = PostgresDatabase(url)
    await db.open()
    await db.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 50,))
    await db.close()
    with pytest.raises(SchemaTooNew) as err:
        await PostgresDatabase(url).open()
    assert "pg-secret-pw" not in str(err.value) and "upgrade LiveCast" in str(err.value)


async def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = f"postgresql://u:topsecret@127.0.0.1:{free_port()}/x"
    with pytest.raises(StorageError) as err:
        await PostgresDatabase(url, connect_timeout=2).open()
    assert "topsecret" not in str(err.value)
    assert redacted(url) == url.replace("topsecret", "***")


async def test_a_failed_transaction_rolls_back(pg_server: PgCluster) -> None:
    db = PostgresDatabase(pg_server.url(await pg_server.create_database("tx")))
    await db.open()
    try:
        with pytest.raises(UniqueViolation):
            async with db.transaction() as tx:
                await tx.insert("INSERT INTO users (username, username_key, password_hash, role, created_at)"
                                " VALUES (?, ?, 'h', 'viewer', 'x') RETURNING id", ("a", "a"))
                await tx.insert("INSERT INTO users (username, username_key, password_hash, role, created_at)"
                                " VALUES (?, ?, 'h', 'viewer', 'x') RETURNING id", ("A", "a"))
        assert await db.fetch_all("SELECT id FROM users") == []
    finally:
        await db.close()


@pytest.mark.slow
async def test_api_answers_503_while_postgresql_is_down_and_recovers(node_factory: Any) -> None:
    """A private cluster, stopped and started under a running node: 503 with Retry-After
    and a JSON error while it is down, /readyz says so, and the node recovers by itself."""
    server = PgCluster()
    server.start()
    try:
        node = await node_factory(database={"url": server.url(await server.create_database("down")),
                                            "connect_timeout": 2.0})
        account = {"username": "survivor", "password": "survivor pw 1"}
        async with node.http.post(node.url("/api/v1/auth/register"), json=account) as r:
            assert r.status == 201
        await asyncio.to_thread(server.pause)
        async with node.http.post(node.url("/api/v1/auth/login"), json=account) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["code"] == "database_unavailable"
        async with node.http.get(node.url("/readyz")) as r:
            assert r.status == 503
        async with node.http.get(node.url("/healthz")) as r:  # alive, and says what is missing
            assert r.status == 200 and await r.json() == {"status": "degraded", "database": False}
        await asyncio.to_thread(server.resume)

        async def logged_in() -> bool:
            async with node.http.post(node.url("/api/v1/auth/login"), json=account) as r:
                return r.status == 200

        await wait_for(logged_in, timeout=20, what="login after PostgreSQL is back")
    finally:
        server.stop()


async def test_a_batch_is_one_transaction_on_both_backends(pg_server: PgCluster, tmp_path: Path) -> None:
    """``execute_batch`` (SQLite: one trip into the driver's thread) returns each statement's
    row count, and a statement that fails undoes the ones before it, with the domain error."""
    insert = ("INSERT INTO users (username, username_key, password_hash, role, created_at)"
              " VALUES (?, ?, 'h', 'viewer', 't')")
    pg_url = pg_server.url(await pg_server.create_database("batch"))
    backends: list[SqliteDatabase | PostgresDatabase] = [SqliteDatabase(tmp_path / "b.db"), PostgresDatabase(pg_url)]
    for db in backends:
        await db.open()
        try:
            nobody = ("UPDATE users SET role = 'admin' WHERE username = ?", ("nobody",))
            assert await db.execute_batch([(insert, ("ann", "ann")), (insert, ("bob", "bob")), nobody]) == [1, 1, 0]
            with pytest.raises(UniqueViolation) as err:
                await db.execute_batch([(insert, ("cy", "cy")), (insert, ("Ann", "ann"))])
            assert err.value.constraint == USERNAME_CONSTRAINT
            names = [r["username"] for r in await db.fetch_all("SELECT username FROM users ORDER BY id")]
            assert names == ["ann", "bob"], db.dialect  # "cy" was rolled back with the failed statement
            assert await db.insert(insert + " RETURNING id", ("dee", "dee")) > 0
            assert await db.execute("UPDATE users SET role = 'admin' WHERE username_key = ?", ("dee",)) == 1
        finally:
            await db.close()
