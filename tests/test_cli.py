"""The ``livecast`` command as a real subprocess: ``user create`` (also beside a running
server), ``serve`` with its banner and SIGTERM, a too-new database, and the settings
precedence flag > LIVECAST_* > config file > default."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecast.cli import build_parser, settings_from_args
from livecast.config import load_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "cli password 1"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["LIVECAST_AUTH_BCRYPT_ROUNDS"] = "4"
    env.update(extra)
    return env


async def livecast(*args: str, stdin: str = "", timeout: float = 30.0, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", *args, cwd=REPO, env=child_env(**env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def create_user(data_dir: Path, name: str, password: str = PASSWORD, role: str = "admin",
                      database: dict[str, Any] | None = None) -> tuple[int, str, str]:
    """``livecast user create`` on the data directory's SQLite file, or on the PostgreSQL
    database of ``database["url"]`` (given as LIVECAST_DATABASE_URL, as an operator would)."""
    env = {"LIVECAST_DATABASE_URL": database["url"]} if database else {}
    code, out, err = await livecast("user", "create", name, "--role", role, "--password-stdin",
                                    "--data-dir", str(data_dir), stdin=password + "\n", **env)
    if database:
        assert "pg-secret-pw" not in out + err  # the URL's password is never printed
    return code, out, err


async def login(node: Any, name: str, password: str = PASSWORD) -> tuple[int, Any]:
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": name, "password": password}) as r:
        return r.status, await r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_user_create_then_serve_and_login(node_factory: Any, tmp_path: Path,
                                                database_section: dict[str, Any]) -> None:
    data = tmp_path / "d1"
    code, out, err = await create_user(data, "rootadmin", database=database_section)
    assert code == 0, err
    assert "created admin rootadmin" in out and PASSWORD not in out + err
    node = await node_factory(data_dir=data)
    status, body = await login(node, "rootadmin")
    assert status == 200 and body["user"]["role"] == "admin"
    async with node.http.get(node.url("/api/v1/admin/users"),
                             headers={"Authorization": f"Bearer {body['token']}"}) as r:
        assert r.status == 200


async def test_user_create_beside_a_running_server(node_factory: Any, tmp_path: Path,
                                                   database_section: dict[str, Any]) -> None:
    data = tmp_path / "d2"
    node = await node_factory(data_dir=data)
    code, _, err = await create_user(data, "liveadmin", database=database_section)
    assert code == 0, err
    status, body = await login(node, "liveadmin")
    assert status == 200 and body["user"]["role"] == "admin"
    # the same name again, in another case: refused with a clear message
    code, _, err = await create_user(data, "LiveAdmin", database=database_section)
    assert code == 1 and "already taken" in err
    code, _, err = await create_user(data, "shorty", password="short", database=database_section)
    assert code == 1 and "password" in err
    assert (await login(node, "shorty", "short"))[0] == 401


async def test_unreachable_postgresql_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://livecast:pg-secret-pw@127.0.0.1:{free_port()}/livecast"
    code, out, err = await livecast("user", "create", "nobody", "--password-stdin", "--data-dir",
                                    str(tmp_path / "d"), stdin=PASSWORD + "\n", LIVECAST_DATABASE_URL=url)
    assert code == 1
    assert "cannot open the database" in err and "Traceback" not in err
    assert "pg-secret-pw" not in out + err


async def test_serve_banner_and_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "served"
    http_port, rtmp_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "serve", "--data-dir", str(data), "--http-port", str(http_port),
        "--rtmp-port", str(rtmp_port), "--host", "127.0.0.1", cwd=REPO, env=child_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                assert proc.returncode is None, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                assert loop.time() < deadline, "server did not answer /healthz in time"
                try:
                    async with http.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        banner = ""
        while "Stop with" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 5)  # type: ignore[union-attr]
            assert line, banner
            banner += line.decode()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == 0, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert f"http://127.0.0.1:{http_port}/" in banner
    assert str(data.resolve()) in banner
    assert "OBS server" in banner
    assert f"rtmp://127.0.0.1:{rtmp_port}/live" in banner


async def test_newer_schema_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "future"
    data.mkdir()
    with sqlite3.connect(data / "livecast.db") as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    code, _, err = await livecast("serve", "--data-dir", str(data), "--http-port", str(free_port()),
                                  "--rtmp-port", str(free_port()), "--host", "127.0.0.1")
    assert code == 1
    assert "schema version 99" in err and "upgrade LiveCast" in err
    assert "Traceback" not in err


# -- settings precedence ------------------------------------------------------------


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "livecast.toml"
    path.write_text('[server]\nhttp_port = 1111\nrtmp_port = 2222\nhost = "10.0.0.1"\n'
                    '[auth]\nsignup_coins = 7\nbcrypt_rounds = 10\n')
    return path


def test_precedence_through_load_settings(tmp_path: Path) -> None:
    path = _config_file(tmp_path)
    env = {"LIVECAST_SERVER_HTTP_PORT": "3333", "LIVECAST_SERVER_RTMP_PORT": "5555",
           "LIVECAST_AUTH_BCRYPT_ROUNDS": "11"}
    s = load_settings(path, environ=env, overrides={"server": {"http_port": 4444, "host": None}})
    assert s.server.http_port == 4444          # flag beats env and file
    assert s.server.rtmp_port == 5555          # env beats file
    assert s.auth.bcrypt_rounds == 11
    assert s.server.host == "10.0.0.1"         # an absent flag (None) leaves the file's value
    assert s.auth.signup_coins == 7            # file beats default
    assert s.server.data_dir == "./data"       # default
    assert load_settings(None, environ={}).server.http_port == 8080
    assert load_settings(None, environ={"LIVECAST_CONFIG": str(path)}).server.http_port == 1111


def test_precedence_through_cli_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config_file(tmp_path)
    for key in [k for k in os.environ if k.startswith("LIVECAST_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LIVECAST_SERVER_RTMP_PORT", "5555")
    monkeypatch.setenv("LIVECAST_SERVER_HTTP_PORT", "3333")
    args = build_parser().parse_args(["serve", "--config", str(path), "--http-port", "4444"])
    s = settings_from_args(args)
    assert (s.server.http_port, s.server.rtmp_port, s.server.host) == (4444, 5555, "10.0.0.1")
    monkeypatch.setenv("LIVECAST_CONFIG", str(path))
    s = settings_from_args(build_parser().parse_args(["serve", "--data-dir", str(tmp_path / "x")]))
    assert (s.server.http_port, s.server.data_dir) == (3333, str(tmp_path / "x"))
