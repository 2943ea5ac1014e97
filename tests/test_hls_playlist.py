from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecast.hls.playlist import MediaPlaylist, PlaylistEntry, program_date_time, rounded_seconds
from media_gen import parse_playlist


def entry(seq: int, duration: float = 2.0, disc: bool = False, map_uri: str | None = None) -> PlaylistEntry:
    ext = "m4s" if map_uri else "ts"
    return PlaylistEntry(seq, f"abc-{seq}.{ext}", duration, 1_700_000_000 + seq * 2, disc, map_uri)


def test_render_ts() -> None:
    playlist = MediaPlaylist("mpegts", 2.0)
    playlist.append(entry(0))
    playlist.append(entry(1, 2.0005))
    text = playlist.render().decode()
    assert text.splitlines()[:6] == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n#EXTINF:2.000,\nabc-0.ts\n" in text
    assert "#EXTINF:2.001,\nabc-1.ts\n" in text  # 3 decimals
    assert "ENDLIST" not in text
    assert "EXT-X-MAP" not in text
    playlist.set_ended(True)
    assert playlist.render().endswith(b"abc-1.ts\n#EXT-X-ENDLIST\n")


def test_render_is_cached_until_a_change() -> None:
    playlist = MediaPlaylist("mpegts", 2.0)
    playlist.append(entry(0))
    first = playlist.render()
    assert playlist.render() is first
    playlist.append(entry(1))
    assert playlist.render() is not first


def test_fmp4_map_and_discontinuity() -> None:
    playlist = MediaPlaylist("fmp4", 2.0)
    playlist.append(entry(0, map_uri="abc-init.mp4"))
    playlist.append(entry(1, map_uri="abc-init.mp4"))
    playlist.append(entry(2, disc=True, map_uri="def-init.mp4"))
    text = playlist.render().decode()
    assert "#EXT-X-VERSION:7" in text
    assert text.count("#EXT-X-MAP") == 2
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="def-init.mp4"\n#EXT-X-PROGRAM-DATE-TIME' in text
    parsed = parse_playlist(text)
    assert [s["map"] for s in parsed["segments"]] == ["abc-init.mp4", "abc-init.mp4", "def-init.mp4"]
    # the first listed segment always gets its MAP, even after the older ones slid out
    playlist.pop_oldest()
    playlist.pop_oldest()
    assert playlist.render().decode().count('#EXT-X-MAP:URI="def-init.mp4"') == 1


def test_target_duration_rounds_like_the_spec_and_never_shrinks() -> None:
    assert rounded_seconds(2.002) == 2
    assert rounded_seconds(2.4999) == 3  # printed as 2.500
    assert rounded_seconds(2.4994) == 2
    playlist = MediaPlaylist("mpegts", 2.0)
    playlist.append(entry(0, 4.2))
    playlist.append(entry(1, 2.0))
    playlist.pop_oldest()
    assert playlist.target_duration == 4
    assert "#EXT-X-TARGETDURATION:4" in playlist.render().decode()


def test_media_sequence_and_discontinuity_sequence_slide() -> None:
    playlist = MediaPlaylist("mpegts", 2.0)
    for seq in range(5):
        playlist.append(entry(seq, disc=seq in (1, 3)))
    playlist.pop_oldest()  # 0: no tag
    assert (playlist.media_sequence, playlist.discontinuity_sequence) == (1, 0)
    playlist.pop_oldest()  # 1 carried a discontinuity tag
    assert (playlist.media_sequence, playlist.discontinuity_sequence) == (2, 1)
    text = playlist.render().decode()
    assert "#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1


def test_program_date_time_format() -> None:
    assert program_date_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert program_date_time(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60), st.integers(2, 8))
def test_discontinuity_numbers_stay_stable_while_sliding(ops: list[tuple[bool, bool]], window: int) -> None:
    """Every segment keeps the same discontinuity sequence number however the window slides."""
    playlist = MediaPlaylist("mpegts", 2.0)
    number_of: dict[int, int] = {}
    disc_count = 0
    for seq, (disc, _) in enumerate(ops):
        disc_count += disc
        number_of[seq] = disc_count
        playlist.append(entry(seq, disc=disc))
        while len(playlist.entries) > window:
            playlist.pop_oldest()
        parsed = parse_playlist(playlist.render().decode())
        current = int(parsed["tags"]["EXT-X-DISCONTINUITY-SEQUENCE"])
        first = int(parsed["tags"]["EXT-X-MEDIA-SEQUENCE"])
        for offset, segment in enumerate(parsed["segments"]):
            current += bool(segment["discontinuity"])
            assert current == number_of[first + offset]
