"""H.264 bitstream helpers: Annex B to AVCC framing, an avcC record, the RFC 6381 codec string."""

from __future__ import annotations

import re

_START = re.compile(b"\x00\x00\x01")
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes)."""
    starts = [m.end() for m in _START.finditer(data)]
    nals = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[start:end].rstrip(b"\x00") if i + 1 < len(starts) else data[start:end]
        if nal:
            nals.append(nal)
    return nals


def to_avcc(nals: list[bytes]) -> bytes:
    """Length-prefixed (4 bytes) NAL units, as FLV and MP4 carry them; AUDs left out."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals if n[0] & 0x1F != NAL_AUD)


def parameter_sets(nals: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    sps = [n for n in nals if n[0] & 0x1F == NAL_SPS]
    pps = [n for n in nals if n[0] & 0x1F == NAL_PPS]
    return sps, pps


def avcc_record(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO 14496-15) for these parameter sets."""
    first = sps[0]
    out = bytearray([1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)])
    for nal in sps:
        out += len(nal).to_bytes(2, "big") + nal
    out.append(len(pps))
    for nal in pps:
        out += len(nal).to_bytes(2, "big") + nal
    return bytes(out)


def codec_string(avcc: bytes) -> str:
    """``avc1.PPCCLL`` from an avcC record: profile, constraint flags and level of its SPS."""
    if len(avcc) < 4 or avcc[0] != 1:
        raise ValueError("not an avcC record")
    return f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def audio_codec_string(asc: bytes) -> str:
    """``mp4a.40.N`` from an AAC AudioSpecificConfig (N: the audio object type)."""
    aot = asc[0] >> 3 if asc else 2
    return f"mp4a.40.{aot or 2}"
