"""The recorder's hot path to S3: one PUT per object over one pooled aiohttp session.

aiobotocore costs ~0.8 ms of CPU per PUT on top of the transfer (parameter validation,
endpoint rules, event hooks, user-agent building, body wrapped in a stream and sent in
chunks); a segment PUT needs none of it. This sends the body in one write, signed with
botocore's own SigV4 signer over the headers only (``UNSIGNED-PAYLOAD``: S3 accepts it for
PUT, and Content-Length plus TCP cover the body). Without credentials the request goes
unsigned, as the aiobotocore client does. Custom endpoints (MinIO, SeaweedFS, Ceph...) are
addressed path-style, AWS virtual-hosted style.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from yarl import URL

from livecast.config import S3Settings

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=20)
_NO_PAYLOAD_SIGNING = Config(s3={"payload_signing_enabled": False})


class PutFailed(Exception):
    """The PUT did not succeed (connection error, timeout or an error status)."""


class S3Putter:
    def __init__(self, bucket: str, settings: S3Settings) -> None:
        region = settings.region or "us-east-1"
        if settings.endpoint:
            self._base = f"{settings.endpoint.rstrip('/')}/{quote(bucket, safe='')}/"
        else:
            self._base = f"https://{bucket}.s3.{region}.amazonaws.com/"
        self._auth = S3SigV4Auth(Credentials(settings.access_key, settings.secret_key), "s3", region) \
            if settings.access_key and settings.secret_key else None
        self._session: aiohttp.ClientSession | None = None

    def url(self, key: str) -> str:
        return self._base + quote(key, safe="/~")

    def headers(self, url: str) -> dict[str, str]:
        """The request's headers: SigV4 over the headers with an unsigned payload."""
        if self._auth is None:
            return {}
        request = AWSRequest(method="PUT", url=url, headers={"X-Amz-Content-SHA256": UNSIGNED_PAYLOAD})
        request.context["client_config"] = _NO_PAYLOAD_SIGNING
        self._auth.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    async def put(self, key: str, data: bytes | bytearray) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT, auto_decompress=False,
                                                  skip_auto_headers=("Content-Type",))
        url = self.url(key)
        try:
            async with self._session.put(URL(url, encoded=True), data=data, headers=self.headers(url)) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise PutFailed(f"HTTP {answer.status}: {body[:200].decode('utf-8', 'replace')}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise PutFailed(str(err) or type(err).__name__) from err

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
