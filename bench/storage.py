"""Storage-layer cost: the database calls behind the hottest API requests, in one process.

Times, on a fresh SQLite file: a room list page (50 rooms of N), a room read by slug, a
session-token lookup (every authenticated request) and a comment insert. ``--tree`` runs
another source tree (e.g. the commit before the storage layer) for a before/after
comparison; runs alternate between the trees and the best of ``--rounds`` is shown, to
spread the machine's noise.

    python bench/storage.py --rooms 2000 --ops 3000 --tree /path/to/other/checkout

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import asyncio, sys, tempfile, time
from pathlib import Path
from livecast.config import AuthSettings
from livecast.chat.store import ChatStore
from livecast.rooms import RoomService
from livecast.users import UserService
try:
    from livecast.storage.sqlite import SqliteDatabase as Db
except ImportError:  # a tree before livecast/storage
    from livecast.db import Database as Db

async def main(rooms: int, ops: int) -> None:
    db = Db(Path(tempfile.mkdtemp()) / "livecast.db")
    await db.open()
    users = UserService(db, AuthSettings(bcrypt_rounds=4))
    owner = await users.create_user("bench", "benchmark1", role="admin")
    session = await users.create_session(owner)
    made = [await RoomService(db).create(owner, f"room {i}") for i in range(rooms)]
    service, store = RoomService(db), ChatStore(db)
    async def timed(name, call):
        start = time.perf_counter()
        for _ in range(ops):
            await call()
        print(f"{name:<22} {(time.perf_counter() - start) / ops * 1e6:8.1f} us")
    await timed("list 50 rooms", lambda: service.list(limit=50))
    await timed("room by slug", lambda: service.get(made[-1].slug))
    await timed("user for token", lambda: users.user_for_token(session.token))
    await timed("add comment", lambda: store.add_comment(made[0].id, owner.id, "hello"))
    users.close()
    await db.close()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


def run(tree: Path, rooms: int, ops: int) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD, str(rooms), str(ops)], capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                         check=True, timeout=600)
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--tree", type=Path, help="another source tree to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
    best: dict[tuple[Path, str], float] = {}
    for _ in range(args.rounds):
        for tree in trees:
            for line in run(tree, args.rooms, args.ops).splitlines():
                name, value = line[:22].strip(), float(line[22:].split()[0])
                best[tree, name] = min(value, best.get((tree, name), value))
    print(f"best of {args.rounds} rounds, {args.rooms} rooms, {args.ops} calls each (us per call)")
    for tree in trees:
        print(f"== {tree}")
        for (t, name), value in best.items():
            if t == tree:
                print(f"  {name:<22} {value:8.1f}")


if __name__ == "__main__":
    main()
