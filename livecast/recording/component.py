"""Builds the recording service for a role: object storage (disk or S3) from the settings,
the index repository, the recorder (an HLS segment tap) and the URL signer."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livecast.config import Settings
from livecast.core.tasks import cancel_and_wait
from livecast.hls.service import HlsService
from livecast.keys import DB
from livecast.recording.clips import CLIPS, ClipService
from livecast.recording.objects import DiskStorage, ObjectStorage
from livecast.recording.recorder import Recorder, RecorderStats
from livecast.recording.remux import Remuxer
from livecast.recording.retention import Retention
from livecast.recording.service import RECORDINGS, RecordingService
from livecast.recording.vod import UrlSigner
from livecast.rooms import RoomExtras
from livecast.storage.recordings import ClipRepository, RecordingRepository

log = logging.getLogger(__name__)

RECORDER: web.AppKey[Recorder] = web.AppKey("recorder")


def make_storage(settings: Settings) -> ObjectStorage:
    target = settings.recording.storage
    if target.startswith("s3://"):
        from livecast.recording.s3 import S3Storage  # aiobotocore only when S3 is configured

        return S3Storage(target, settings.s3)
    return DiskStorage(settings.data_path / "recordings")


def signing_key(settings: Settings) -> bytes:
    """The cluster secret (every node then accepts the same signed URLs), else a key of this
    process (signed URLs then die with it)."""
    if settings.cluster.secret:
        return b"recordings:" + settings.cluster.secret.encode()
    return secrets.token_bytes(32)


def lifecycle(settings: Settings, hls: Callable[[], HlsService], stats: RecorderStats,
              room_extras: RoomExtras) -> Callable[[web.Application], AsyncIterator[None]]:
    async def recording(app: web.Application) -> AsyncIterator[None]:
        storage = make_storage(settings)
        repo = RecordingRepository(app[DB])
        recorder = Recorder(settings.recording, storage, repo, stats=stats, node=settings.cluster.node_url)
        await recorder.start()
        hls().add_tap(recorder)
        app[RECORDER] = recorder
        remuxer = Remuxer(settings.recording.download_workers)
        service = app[RECORDINGS] = RecordingService(settings.recording, repo, storage, recorder,
                                                     UrlSigner(signing_key(settings)),
                                                     settings.data_path / "recordings-cache", remuxer)
        app[CLIPS] = ClipService(service, ClipRepository(app[DB]))
        await service.choices.load()
        unregister = room_extras.register(service.choices.room_extra)
        refresher = asyncio.create_task(service.choices.refresh_forever(), name="recording-choices")
        retention = Retention(settings.recording, repo, service.delete_by_id)
        sweeper = asyncio.create_task(retention.run_forever(), name="recording-retention") \
            if retention.active() else None
        try:
            yield
        finally:
            unregister()
            await cancel_and_wait(refresher)
            await cancel_and_wait(sweeper)
            remuxer.close()
            await recorder.close()

    return recording
