"""Optional write-through of rooms' HLS files to ``{data_path}/hls/{slug}/``.

Every write goes to a temporary file first and is renamed into place
(``os.replace``), so readers never see half a file. All disk work runs on one
worker thread in submission order, off the event loop; playlist writes are
coalesced (only the newest version is written). When the disk falls behind,
segment writes are dropped and counted rather than piling up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

PLAYLIST_NAME = "index.m3u8"
MAX_BACKLOG = 256


def _safe(part: str) -> bool:
    return bool(part) and "/" not in part and "\\" not in part and not part.startswith(".") and "\0" not in part


def write_atomic(path: Path, data: bytes | bytearray) -> None:
    temp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    with open(temp, "wb") as fh:
        fh.write(data)
    os.replace(temp, path)


class DiskMirror:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dropped = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hls-disk")
        self._lock = threading.Lock()
        self._backlog = 0
        self._playlists: dict[str, bytes] = {}

    def reset(self) -> None:
        """Remove files left over by an earlier run."""
        self._submit(self._reset)

    def write(self, slug: str, name: str, data: bytes | bytearray) -> None:
        if not (_safe(slug) and _safe(name)):
            return
        if self._backlog >= MAX_BACKLOG:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:
                log.warning("disk too slow, segment writes dropped: %d", self.dropped)
            return
        self._submit(self._write, slug, name, data)

    def delete(self, slug: str, name: str) -> None:
        if _safe(slug) and _safe(name):
            self._submit(self._delete, slug, name)

    def playlist(self, slug: str, data: bytes) -> None:
        if not _safe(slug):
            return
        with self._lock:
            queued = slug in self._playlists
            self._playlists[slug] = data
        if not queued:
            self._submit(self._write_playlist, slug)

    def remove_room(self, slug: str) -> None:
        if _safe(slug):
            with self._lock:
                self._playlists.pop(slug, None)
            self._submit(self._remove_room, slug)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True)

    # -- worker thread --------------------------------------------------------

    def _submit(self, fn: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._backlog += 1
        try:
            self._executor.submit(self._run, fn, *args)
        except RuntimeError:  # shut down
            with self._lock:
                self._backlog -= 1

    def _run(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except OSError as err:
            log.warning("HLS write-through failed: %s", err)
        finally:
            with self._lock:
                self._backlog -= 1

    def _dir(self, slug: str) -> Path:
        path = self.root / slug
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _reset(self) -> None:
        if self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True)

    def _write(self, slug: str, name: str, data: bytes | bytearray) -> None:
        write_atomic(self._dir(slug) / name, data)

    def _delete(self, slug: str, name: str) -> None:
        try:
            os.unlink(self.root / slug / name)
        except FileNotFoundError:
            pass

    def _write_playlist(self, slug: str) -> None:
        with self._lock:
            data = self._playlists.pop(slug, None)
        if data is not None:
            write_atomic(self._dir(slug) / PLAYLIST_NAME, data)

    def _remove_room(self, slug: str) -> None:
        shutil.rmtree(self.root / slug, ignore_errors=True)
