"""Where recorded bytes live: one small interface, a local-disk backend and (s3.py) S3.

``put`` returns only once the object is durable (disk: written, fsynced and renamed into
place; S3: the PUT answered), so a caller may index the object right after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The storage backend failed (unreachable, refused, disk full...)."""


class ObjectStorage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
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
    """Objects as files under ``root``; blocking file calls run in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def put(self, key: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._write, self._path(key), data)
        except OSError as err:
            raise StorageError(f"cannot store {key}: {err.strerror or err}") from err

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable
        finally:
            os.close(fd)

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
        return None
