"""The ladder for one source: each configured rendition's output size and frame rate."""

from __future__ import annotations

from dataclasses import dataclass

from livecast.config import RenditionSpec


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    video_bitrate: int
    fps: float | None
    preset: str


def even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def rungs(specs: list[RenditionSpec], width: int, height: int) -> list[Rung]:
    """The renditions worth making from a ``width`` x ``height`` source: never upscaled (a
    rendition as tall as the source or taller is left out), aspect ratio kept, even sizes."""
    out = []
    for spec in specs:
        if spec.height >= height:
            continue
        h = even(spec.height)
        out.append(Rung(spec.name, even(width * h / height), h, spec.video_bitrate, spec.fps, spec.preset))
    return out
