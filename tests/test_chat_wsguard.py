"""The frame guard's header tracker, fed bytes directly (sans I/O): frame boundaries
across any chunking, every length form, the mask check and the frame budget."""

from __future__ import annotations

import os

import pytest

from livecast.chat.wsguard import FrameBudget, FrameHeaders


def frame(opcode: int, size: int, masked: bool = True, fin: bool = True) -> bytes:
    if size < 126:
        head = bytes(((0x80 if fin else 0) | opcode, (0x80 if masked else 0) | size))
    elif size < 65536:
        head = bytes(((0x80 if fin else 0) | opcode, (0x80 if masked else 0) | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes(((0x80 if fin else 0) | opcode, (0x80 if masked else 0) | 127)) + size.to_bytes(8, "big")
    return head + (os.urandom(4) if masked else b"") + b"x" * size


def tracker(burst: int = 1000, rate: float = 1.0) -> FrameHeaders:
    clock = [0.0]
    return FrameHeaders(FrameBudget(rate, burst, clock=lambda: clock[0]))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100, 10**6])
def test_frames_of_every_length_form_are_followed_across_any_chunking(chunk: int) -> None:
    stream = b"".join(frame(op, size) for op, size in
                      [(1, 0), (1, 125), (1, 126), (2, 65535), (1, 65536), (9, 3), (0xA, 0), (1, 70000)])
    headers = tracker()
    for pos in range(0, len(stream), chunk):
        assert headers.feed(stream[pos:pos + chunk]) is None
    assert headers.frames == 8


def test_fragments_count_as_frames() -> None:
    headers = tracker()
    assert headers.feed(frame(1, 10, fin=False) + frame(0, 10, fin=False) + frame(0, 10)) is None
    assert headers.frames == 3


@pytest.mark.parametrize("chunk", [1, 3, 10**6])
def test_an_unmasked_frame_is_reported_with_its_offset(chunk: int) -> None:
    good = frame(1, 20)
    stream = good + frame(1, 5, masked=False) + frame(1, 5)
    headers = tracker()
    results = [headers.feed(stream[pos:pos + chunk]) for pos in range(0, len(stream), chunk)]
    broken = [(i, r) for i, r in enumerate(results) if r is not None]
    assert broken, "the unmasked frame was not seen"
    index, (offset, code) = broken[0]
    assert code == 1002
    start = len(good)  # where the bad frame begins in the stream
    assert index == (start + 1) // chunk  # its second header byte (the mask bit) is in this chunk
    assert offset == max(0, start - index * chunk)  # 0 when its header began in an earlier chunk


def test_the_budget_refuses_the_frame_after_the_burst_and_refills_with_time() -> None:
    clock = [0.0]
    headers = FrameHeaders(FrameBudget(2.0, 3, clock=lambda: clock[0]))
    assert headers.feed(frame(9, 0) * 3) is None
    offset, code = headers.feed(frame(9, 0) * 2) or (None, None)
    assert (offset, code) == (0, 1008)
    clock[0] += 1.0  # two more frames' worth
    fresh = FrameHeaders(FrameBudget(2.0, 3, clock=lambda: clock[0]))
    assert fresh.feed(frame(9, 0) * 3) is None
    clock[0] += 1.0
    assert fresh.feed(frame(9, 0) * 2) is None
    assert fresh.feed(frame(9, 0)) == (0, 1008)
