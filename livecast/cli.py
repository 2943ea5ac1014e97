"""The ``livecast`` command: ``serve`` runs a node, ``user create`` adds an account."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from livecast.config import ConfigError, Settings, load_settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: $LIVECAST_CONFIG)")
    p.add_argument("--data-dir", metavar="DIR", help="where the database and HLS files live (default ./data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecast", description="Self-hosted live streaming server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a LiveCast node")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--rtmp-port", type=int, help="RTMP port (default 1935)")
    serve.add_argument("--role", choices=["origin", "edge"], help="node role (default origin)")
    serve.add_argument("--origin", metavar="URL", help="origin base URL (edge only)")
    serve.add_argument("--demo", action="store_true", help="create a demo room and publish a test pattern into it")

    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create an account")
    _common(create)
    create.add_argument("username")
    create.add_argument("--role", choices=["viewer", "streamer", "admin"], default="viewer")
    create.add_argument("--email")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    server: dict[str, Any] = {"data_dir": args.data_dir}
    if getattr(args, "demo", False):
        server["demo"] = True
    if args.command == "serve":  # `user create --role` is an account role, not server.role
        for name in ("host", "http_port", "rtmp_port", "role", "origin"):
            server[name] = getattr(args, name, None)
    return load_settings(args.config, overrides={"server": server})


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise SystemExit("passwords do not match")
    return first


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> None:
    from livecast.app.databases import describe, open_database
    from livecast.users import UserService

    db = await open_database(settings)
    try:
        users = UserService(db, settings.auth)
        user = await users.create_user(args.username, password, role=args.role, email=args.email)
    finally:
        await db.close()
    print(f"created {user.role} {user.username} (id {user.id}) in {describe(settings)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigError as err:
        print(f"livecast: configuration error: {err}", file=sys.stderr)
        return 2

    from livecast.core.errors import LivecastError
    from livecast.logs import setup_logging
    from livecast.storage.errors import SchemaTooNew, StorageError

    setup_logging(settings.log)
    try:
        if args.command == "serve":
            from livecast.server import run

            run(settings)
        else:
            asyncio.run(_create_user(settings, args, _read_password(args)))
    except SchemaTooNew as err:
        print(f"livecast: {err}", file=sys.stderr)
        return 1
    except StorageError as err:
        print(f"livecast: cannot open the database: {err}", file=sys.stderr)
        return 1
    except LivecastError as err:
        print(f"livecast: {err.message}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"livecast: cannot start: {err}", file=sys.stderr)
        return 1
    return 0
