"""What the rest of the server reads about a room's ladder: the variants, their health, drops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Variant:
    """One rendition as the multivariant playlist and the dashboard describe it."""

    name: str
    width: int
    height: int
    fps: float
    codecs: str  # "avc1.PPCCLL" (+ ",mp4a.40.N" once the audio is known)
    video_bitrate: int  # configured (the source: measured), before segments exist
    health: dict[str, Any] = field(default_factory=dict)  # fps, bitrate, speed


@dataclass
class Ladder:
    slug: str
    source: Variant | None = None
    audio_codec: str | None = None
    renditions: dict[str, Variant] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # name -> reason
    restarts: int = 0
    worker_pid: int | None = None

    def variants(self) -> list[Variant]:
        found = [self.source] if self.source is not None else []
        return found + [v for name, v in self.renditions.items() if name not in self.dropped]

    def codecs(self, variant: Variant) -> str:
        return f"{variant.codecs},{self.audio_codec}" if self.audio_codec else variant.codecs

    def info(self) -> list[dict[str, Any]]:
        out = []
        for v in ([self.source] if self.source else []) + list(self.renditions.values()):
            out.append({"name": v.name, "width": v.width, "height": v.height, "fps": v.fps,
                        "codecs": self.codecs(v), "health": dict(v.health),
                        "dropped": self.dropped.get(v.name)})
        return out


class Ladders:
    """The live ladders by room (one publish session each; a takeover replaces it)."""

    def __init__(self) -> None:
        self._by_slug: dict[str, Ladder] = {}
        self.dropped_total = 0
        self.restarts_total = 0

    def start(self, slug: str) -> Ladder:
        ladder = self._by_slug[slug] = Ladder(slug)
        return ladder

    def stop(self, ladder: Ladder) -> None:
        if self._by_slug.get(ladder.slug) is ladder:
            del self._by_slug[ladder.slug]

    def get(self, slug: str) -> Ladder | None:
        return self._by_slug.get(slug)

    def all(self) -> list[Ladder]:
        return list(self._by_slug.values())
