"""LL-HLS delivery directives and the waiting they cause (rfc8216bis 6.2.5).

``parse_directives`` reads ``_HLS_msn``, ``_HLS_part`` and ``_HLS_skip`` from a
query (400 for malformed values and for ``_HLS_part`` without ``_HLS_msn``);
``check_reachable`` refuses requests too far ahead (400): a segment more than two
after the last complete one, or a part further ahead of the newest part than the
Advance Part Limit. ``wanted_present`` says whether the playlist now holds what a
blocking request waits for.

Held requests do not poll. Each room has one ``ChangeSignal``: a future created
only when the first request starts waiting, resolved (and dropped) by the segmenter
side on every change, so one change wakes every held request at once and a quiet
room costs nothing. Each waiter shields the shared future (a request that times out
or is cancelled must not cancel it for the others); per held request that is one
small future plus the request's own coroutine and timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from livecast.core.errors import ValidationError
from livecast.hls.playlist import MediaPlaylist

HOLD_TARGET_DURATIONS = 3  # a blocking request unanswered after this many target durations: 503


class ChangeSignal:
    """One shared wake-up per change for every waiter of a room."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        """Return at the next ``fire()``."""
        future = self._future
        if future is None:
            future = self._future = asyncio.get_running_loop().create_future()
        await asyncio.shield(future)

    @property
    def waiting(self) -> bool:
        return self._future is not None


@dataclass(frozen=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def _number(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ValidationError(f"{name} must be a non-negative integer", field=name)
    return int(raw)


def parse_directives(query: Mapping[str, str]) -> Directives:
    msn = _number(query, "_HLS_msn")
    part = _number(query, "_HLS_part")
    if part is not None and msn is None:
        raise ValidationError("_HLS_part needs _HLS_msn", field="_HLS_part")
    skip = query.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise ValidationError("_HLS_skip must be YES or v2", field="_HLS_skip")
    return Directives(msn, part, skip is not None)


def check_reachable(playlist: MediaPlaylist, wanted: Directives, parts_per_segment: int) -> None:
    """400 for a request that asks too far ahead to be worth holding."""
    assert wanted.msn is not None and playlist.low_latency is not None
    if wanted.msn > playlist.last_sequence + 2:
        raise ValidationError(
            f"_HLS_msn {wanted.msn} is more than two segments after the last one ({playlist.last_sequence})",
            field="_HLS_msn",
        )
    if wanted.part is None:
        return
    msn, part = playlist.part_position()
    if wanted.msn < msn:
        return
    ahead = (wanted.msn - msn) * parts_per_segment + wanted.part - part
    if ahead > playlist.low_latency.advance_part_limit:
        raise ValidationError(
            f"_HLS_part {wanted.part} of segment {wanted.msn} is more than "
            f"{playlist.low_latency.advance_part_limit} parts ahead", field="_HLS_part",
        )


def wanted_present(playlist: MediaPlaylist, wanted: Directives) -> bool:
    assert wanted.msn is not None
    if wanted.part is None:
        return playlist.last_sequence >= wanted.msn
    return playlist.part_position() >= (wanted.msn, wanted.part)
