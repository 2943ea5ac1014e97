"""S3-compatible object storage (AWS, MinIO, SeaweedFS, ...) through aiobotocore; the
recorder's PUTs go through the leaner ``s3put.S3Putter`` (same endpoint and credentials).

``recording.storage = "s3://bucket/prefix"``; endpoint, region and credentials come from
``[s3]`` (no credentials: unsigned requests). A PUT that S3 answered is durable. Errors of
any kind become ``StorageError``; the client is opened on first use and closed with the
storage.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from livecast.config import S3Settings
from livecast.recording.objects import StorageError, _safe_key
from livecast.recording.s3put import PutFailed, S3Putter

log = logging.getLogger(__name__)

_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20}


def parse_target(target: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, "prefix/") ("" when there is no prefix)."""
    parts = urlsplit(target)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {target!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3Storage:
    def __init__(self, target: str, settings: S3Settings) -> None:
        self.bucket, self.prefix = parse_target(target)
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._putter = S3Putter(self.bucket, settings)

    async def _s3(self) -> Any:
        if self._client is None:
            s = self.settings
            signed = bool(s.access_key and s.secret_key)
            # No client-side body checksums (botocore's default CRC32 of every PUT): the
            # segment is in memory and TCP and S3's own Content-Length check cover it.
            config = Config(retries={"max_attempts": 1}, request_checksum_calculation="when_required",
                            response_checksum_validation="when_required", **_TIMEOUTS,
                            s3={"payload_signing_enabled": False},
                            **({} if signed else {"signature_version": UNSIGNED}))
            creator = get_session().create_client(
                "s3", region_name=s.region or None, endpoint_url=s.endpoint or None,
                aws_access_key_id=s.access_key or None, aws_secret_access_key=s.secret_key or None,
                config=config)
            self._client = await self._stack.enter_async_context(creator)
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + _safe_key(key)

    async def put(self, key: str, data: bytes | bytearray) -> None:
        try:
            await self._putter.put(self._key(key), data)
        except PutFailed as err:
            raise StorageError(f"S3 PUT {key}: {err}") from err

    async def get(self, key: str) -> bytes | None:
        try:
            answer = await (await self._s3()).get_object(Bucket=self.bucket, Key=self._key(key))
            async with answer["Body"] as body:
                return bytes(await body.read())
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"S3 GET {key}: {err}") from err
        except (BotoCoreError, OSError) as err:
            raise StorageError(f"S3 GET {key}: {err}") from err

    async def delete(self, key: str) -> None:
        try:
            await (await self._s3()).delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError, OSError) as err:
            raise StorageError(f"S3 DELETE {key}: {err}") from err

    async def delete_prefix(self, prefix: str) -> None:
        client = await self._s3()
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/"):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    await client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        except (BotoCoreError, ClientError, OSError) as err:
            raise StorageError(f"S3 delete {prefix}: {err}") from err

    def free_bytes(self) -> int | None:
        return None

    async def close(self) -> None:
        await self._putter.close()
        await self._stack.aclose()
        self._client = None
