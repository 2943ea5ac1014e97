"""Where recorded bytes live: one small interface, a local-disk backend and (s3.py) S3.

``put`` returns only once the object is durable (disk: written under its final name and
fdatasynced, its directory fsynced; S3: the PUT answered), so a caller may index the object
right after. A crash during a disk ``put`` leaves at worst a partial file that no index row
names; deleting the recording (retention, or the owner) removes it with the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The storage backend failed (unreachable, refused, disk full...)."""


class ObjectStorage(Protocol):
    async def put(self, key: str, data: bytes | bytearray) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def delete(self, key: str) -> None: ...
    async def delete_prefix(self, prefix: str) -> None: ...
    def free_bytes(self) -> int | None:
        """Free space where objects go, None when unknown (object storage)."""
        ...
    async def close(self) -> None: ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise StorageError(f"bad object key {key!r}")
    return key


class DiskStorage:
    """Objects as files under ``root``; blocking file calls run on one thread of its own.

    A write is one ``os.write`` of the whole body (no copy) into a file created under its
    final name (``O_EXCL``) and ``fdatasync``; a new directory is fsynced (with its parent)
    once, when it is created, and the object's directory after each object, so that the new
    name is durable too (after the file's fdatasync that costs ext4 and xfs next to nothing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recording-disk")
        self._dirs: set[Path] = set()  # directories known to exist durably

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def put(self, key: str, data: bytes | bytearray) -> None:
        path = self._path(key)
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write, path, data)
        except OSError as err:
            raise StorageError(f"cannot store {key}: {err.strerror or err}") from err

    def _write(self, path: Path, data: bytes | bytearray) -> None:
        self._ensure_dir(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:  # left by a failed attempt or a crash: never indexed
            path.unlink()
            fd = os.open(path, flags, 0o644)
        try:
            view, done = memoryview(data), 0
            while done < len(view):
                done += os.write(fd, view[done:])
            os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        _fsync_dir(path.parent)

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._dirs:
            return
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(directory)
            _fsync_dir(directory.parent)
        self._dirs.add(directory)

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err.strerror or err}") from err

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, True)

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        self._dirs = {d for d in self._dirs if not d.is_relative_to(path)}
        await asyncio.to_thread(shutil.rmtree, path, True)

    def free_bytes(self) -> int | None:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            return shutil.disk_usage(probe).free
        except OSError:
            return None

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
