"""A small MPEG-TS packet reader for tests (ISO/IEC 13818-1, 2.4.3.2 and 2.4.3.4).

``packets`` splits a stream into 188-byte packets and reads the header fields a
player's continuity check uses; ``continuity_errors`` applies that check the way a
demuxer does: per PID, the counter of a packet with payload is the previous one plus
one (mod 16), a packet without payload repeats it, one duplicate packet may repeat
it, and a packet with the discontinuity indicator set may start anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF


@dataclass(frozen=True)
class TsPacket:
    offset: int  # byte offset in the stream
    pid: int
    payload_unit_start: bool
    adaptation_field_control: int  # 1 payload only, 2 adaptation field only, 3 both
    continuity_counter: int
    discontinuity: bool  # discontinuity_indicator of the adaptation field
    raw: bytes

    @property
    def has_payload(self) -> bool:
        return bool(self.adaptation_field_control & 1)


class TsError(ValueError):
    """Not a stream of 188-byte TS packets."""


def packets(data: bytes) -> list[TsPacket]:
    if len(data) % PACKET:
        raise TsError(f"{len(data)} bytes is not a whole number of {PACKET}-byte packets")
    out = []
    for offset in range(0, len(data), PACKET):
        raw = data[offset : offset + PACKET]
        if raw[0] != SYNC:
            raise TsError(f"no sync byte at offset {offset}")
        control = (raw[3] >> 4) & 3
        discontinuity = bool(control & 2 and raw[4] > 0 and raw[5] & 0x80)
        out.append(TsPacket(
            offset, (raw[1] & 0x1F) << 8 | raw[2], bool(raw[1] & 0x40), control, raw[3] & 0x0F, discontinuity, raw,
        ))
    return out


def continuity_errors(stream: list[TsPacket]) -> list[str]:
    """Every place where a PID's continuity counter breaks without a discontinuity indicator."""
    errors: list[str] = []
    last: dict[int, TsPacket] = {}
    for packet in stream:
        if packet.pid == NULL_PID:
            continue
        before = last.get(packet.pid)
        last[packet.pid] = packet
        if before is None or packet.discontinuity:
            continue
        repeats = not packet.has_payload or packet.raw == before.raw  # no payload, or a duplicate packet
        expected = (before.continuity_counter + (0 if repeats else 1)) & 0x0F
        if packet.continuity_counter != expected:
            errors.append(f"PID {packet.pid:#x} at byte {packet.offset}: counter {packet.continuity_counter}, "
                          f"expected {expected}")
    return errors


def discontinuities(stream: list[TsPacket]) -> list[TsPacket]:
    return [packet for packet in stream if packet.discontinuity]
