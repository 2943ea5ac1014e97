"""MPEG-TS continuity across the segments of one publish session.

Every segment is its own little TS file from a fresh FFmpeg muxer: each PID's
continuity counter starts again at 0, and the muxer (``initial_discontinuity``) sets
the discontinuity indicator on each PID's first packet, so the segment also plays on
its own. Played back to back, that reads as a broken stream: players count
continuity errors, and those that trust the indicator reset their clocks at every
segment although the timestamps run on.

``TsContinuity`` rewrites each finished segment in place (sans-IO, one per session):
each PID's counters are shifted so they continue from the previous segment's last
packet of that PID (ISO/IEC 13818-1 2.4.3.3: a packet with payload is the previous
counter plus one, a packet without payload repeats it). The shift is the same for a
whole segment, so what the muxer got right inside it (adaptation-only packets,
duplicates) stays right. The discontinuity indicator is cleared, except in the first
segment of the session and where the segmenter marks a real break (a new timeline
or a new codec configuration). Clearing it only flips a flag bit, which is why the
muxer keeps setting it: adding an adaptation field where there is none would mean
repacketising.
"""

from __future__ import annotations

import logging
from itertools import pairwise

log = logging.getLogger(__name__)

PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF
_HAS_PAYLOAD = 0x10
_HAS_ADAPTATION = 0x20
_DISCONTINUITY = 0x80  # first flag of the adaptation field
_PID_HIGH = bytes(b & 0x1F for b in range(256))  # byte 1 without the error/start/priority bits
_LOW = bytes(b & 0x0F for b in range(256))  # a header byte's counter, or a sum of two modulo 16
_HIGH = bytes(b & 0xF0 for b in range(256))  # a header byte without its counter
_NONZERO = bytes([0]) + bytes([1]) * 255
_SHIFT_BYTE = [bytes([s]) for s in range(16)]


def _run_starts(high: bytes | bytearray, low: bytes | bytearray) -> list[int]:
    """Where each run of packets of one PID starts (``high``/``low``: the PID bytes of every
    packet), found with whole-column arithmetic: a column XOR itself moved by one packet
    is non-zero exactly where the PID changes."""
    n = len(high)
    h, lo = int.from_bytes(high, "big"), int.from_bytes(low, "big")
    changes = ((h ^ (h >> 8)) | (lo ^ (lo >> 8))).to_bytes(n, "big").translate(_NONZERO)
    starts = [0]
    i = changes.find(1, 1)
    while i != -1:
        starts.append(i)
        i = changes.find(1, i + 1)
    return starts


def _add_counters(headers: bytes | bytearray, shifts: bytes) -> bytes:
    """Every header byte's counter plus the shift in the same place of ``shifts``, modulo 16,
    its flag bits kept: one addition of the two columns as integers (a byte's sum is at most
    30, so nothing carries into the next)."""
    n = len(headers)
    total = int.from_bytes(headers.translate(_LOW), "big") + int.from_bytes(shifts, "big")
    counters = int.from_bytes(total.to_bytes(n, "big").translate(_LOW), "big")
    return (int.from_bytes(headers.translate(_HIGH), "big") | counters).to_bytes(n, "big")


class TsContinuity:
    """Continuity counters of one session, carried from segment to segment.

    The work is done on whole columns (bytes 1 to 3 of every packet) with integer
    arithmetic; only the runs of packets of one PID (tens per segment) are visited one by
    one, so its cost barely grows with the bit rate.
    """

    def __init__(self) -> None:
        self._last: dict[int, int] = {}  # PID -> counter of the last packet written
        self.unaligned = 0  # segments left untouched because they were not whole TS packets

    def rewrite(self, data: bytes | bytearray, discontinuity: bool) -> bytes | bytearray:
        """``data`` with counters continuing the previous segment's; the discontinuity
        indicator stays only on each PID's first packet, and only if ``discontinuity``
        is set or this is the first segment. A bytearray is patched in place and returned
        (a segment is megabytes: copying it into ``bytes`` cost more than the rewrite);
        ``bytes`` are copied first."""
        count = len(data) // PACKET
        if not count or len(data) % PACKET or data[::PACKET].count(SYNC) != count:
            self.unaligned += 1
            if self.unaligned & (self.unaligned - 1) == 0:
                log.warning("segment is not a whole number of TS packets, left as is (%d so far)", self.unaligned)
            return data
        keep_indicator = discontinuity or not self._last
        out = data if isinstance(data, bytearray) else bytearray(data)
        headers: bytes | bytearray = out[3::PACKET]
        high = out[1::PACKET].translate(_PID_HIGH)
        low = out[2::PACKET]
        starts = _run_starts(high, low)
        starts.append(count)
        shifts: dict[int, int] = {}
        last: dict[int, int] = {}  # PID -> index of its last packet
        column: list[bytes] = []  # each packet's shift, run by run
        for first, end in pairwise(starts):
            pid = high[first] << 8 | low[first]
            shift = shifts.get(pid)
            if shift is None:
                shift = shifts[pid] = self._first_packet(out, first * PACKET, pid, headers[first], keep_indicator)
            column.append(_SHIFT_BYTE[shift] * (end - first))
            last[pid] = end - 1
        if any(shifts.values()):
            headers = _add_counters(headers, b"".join(column))
            out[3::PACKET] = headers
        for pid, index in last.items():
            self._last[pid] = headers[index] & 0x0F
        return out

    def _first_packet(self, out: bytearray, pos: int, pid: int, header: int, keep_indicator: bool) -> int:
        """The counter shift for ``pid`` in this segment; clears the indicator of its first
        packet (the only one the muxer sets it on) unless it must stay."""
        if not keep_indicator and header & _HAS_ADAPTATION and out[pos + 4] and out[pos + 5] & _DISCONTINUITY:
            out[pos + 5] &= ~_DISCONTINUITY & 0xFF
        previous = self._last.get(pid)
        if previous is None or pid == NULL_PID:
            return 0  # a PID new in this session: nothing to continue
        expected = previous + 1 if header & _HAS_PAYLOAD else previous
        return (expected - header) & 0x0F
