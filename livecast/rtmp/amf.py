"""AMF0 values for RTMP commands and data messages: decode a payload into a list of
Python values, encode a list of values into a payload.

pyrtmp 0.3.1 ships ``AMF0Deserializer``/``AMF0Serializer`` (over ``bitstring``), but
they cannot carry what encoders actually send: the object reader never consumes the
object-end marker (every value after an object is garbage), ECMA arrays come back as
lists of one-key dicts and assert a count that encoders routinely set to 0, strict
arrays, dates, long strings, undefined and references are missing, and the
serializer writes the *character* count of a string as its byte length (corrupting
any non-ASCII stream name echoed in a status). So this module is a small, complete,
``struct``-based implementation of its own; it does not import pyrtmp at all.

Mapping (decode -> Python -> encode):

* number -> ``float`` (``int`` and ``float`` encode as number; ``bool`` as boolean)
* boolean -> ``bool``; string / long string / XML document -> ``str``
* object -> ``dict``; typed object -> ``dict`` (class name dropped)
* ECMA array -> :class:`EcmaArray` (a ``dict``); strict array -> ``list`` (tuples too)
* null and "unsupported" -> ``None``; undefined -> :data:`UNDEFINED`
* date -> timezone-aware ``datetime`` in UTC; reference -> the referenced object
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Iterable
from typing import Final

__all__ = ["UNDEFINED", "AmfError", "EcmaArray", "Undefined", "decode_values", "encode_values"]

NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED_MARKER, REFERENCE = range(8)
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING, UNSUPPORTED = range(8, 14)
RECORDSET, XML_DOCUMENT, TYPED_OBJECT, AVMPLUS = range(14, 18)

MAX_DEPTH: Final = 64  # nesting limit: hostile payloads must not reach Python's recursion limit
_F64 = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class AmfError(ValueError):
    """The payload is not valid AMF0 (or uses a type this module does not support)."""


class Undefined:
    """AMF0 ``undefined``; use the singleton :data:`UNDEFINED`."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:  # noqa: PYI034 (a singleton)
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = Undefined()


class EcmaArray(dict[str, object]):
    """A ``dict`` that encodes as an AMF0 ECMA array (what ``onMetaData`` carries)."""


# -- decoding -----------------------------------------------------------------------------


class _Decoder:
    __slots__ = ("data", "pos", "refs")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.refs: list[object] = []

    def take(self, n: int) -> bytes:
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise AmfError(f"truncated AMF0 value at byte {start}")
        self.pos = end
        return self.data[start:end]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def key(self) -> str:
        return self.take(self.u16()).decode("utf-8", "replace")

    def value(self, depth: int = 0) -> object:
        if depth > MAX_DEPTH:
            raise AmfError("AMF0 nesting too deep")
        marker = self.take(1)[0]
        if marker == NUMBER:
            return float(_F64.unpack(self.take(8))[0])
        if marker == BOOLEAN:
            return self.take(1)[0] != 0
        if marker == STRING:
            return self.key()
        if marker in (LONG_STRING, XML_DOCUMENT):
            return self.take(self.u32()).decode("utf-8", "replace")
        if marker in (NULL, UNSUPPORTED):
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == OBJECT:
            return self.properties({}, depth)
        if marker == TYPED_OBJECT:
            self.key()  # class name: nothing in RTMP ingest needs it
            return self.properties({}, depth)
        if marker == ECMA_ARRAY:
            self.u32()  # advisory count: encoders often write 0, so the end marker rules
            return self.properties(EcmaArray(), depth)
        if marker == STRICT_ARRAY:
            return self.strict_array(depth)
        if marker == DATE:
            return self.date()
        if marker == REFERENCE:
            index = self.u16()
            if index >= len(self.refs):
                raise AmfError(f"AMF0 reference {index} out of range")
            return self.refs[index]
        raise AmfError(f"unsupported AMF0 marker 0x{marker:02x}")

    def properties(self, obj: dict[str, object], depth: int) -> dict[str, object]:
        self.refs.append(obj)
        while True:
            if self.pos >= len(self.data):
                return obj  # end marker missing at the very end: some encoders do this
            name = self.key()
            if not name and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return obj
            obj[name] = self.value(depth + 1)

    def strict_array(self, depth: int) -> list[object]:
        count = self.u32()
        if count > len(self.data) - self.pos:  # every element takes at least one byte
            raise AmfError(f"AMF0 strict array count {count} exceeds the payload")
        items: list[object] = []
        self.refs.append(items)
        for _ in range(count):
            items.append(self.value(depth + 1))
        return items

    def date(self) -> dt.datetime:
        millis = _F64.unpack(self.take(8))[0]
        self.take(2)  # time zone: reserved, should be 0
        if not math.isfinite(millis):
            raise AmfError("AMF0 date is not finite")
        try:
            return _EPOCH + dt.timedelta(milliseconds=millis)
        except OverflowError as err:
            raise AmfError("AMF0 date out of range") from err


def decode_values(data: bytes | bytearray | memoryview, offset: int = 0) -> list[object]:
    """Decode every AMF0 value in ``data[offset:]``; raises :class:`AmfError`."""
    decoder = _Decoder(data, offset)
    values: list[object] = []
    end = len(decoder.data)
    while decoder.pos < end:
        values.append(decoder.value())
    return values


# -- encoding -----------------------------------------------------------------------------


def _encode_key(out: bytearray, name: str) -> None:
    raw = name.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AmfError("AMF0 property name longer than 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AmfError("AMF0 nesting too deep")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out.append(ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(OBJECT)
        for name, item in value.items():
            _encode_key(out, str(name))
            _encode(out, item, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(out, item, depth + 1)
    elif isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        out.append(DATE)
        out += _F64.pack((when - _EPOCH) / dt.timedelta(milliseconds=1))
        out += b"\x00\x00"
    else:
        raise AmfError(f"cannot encode {type(value).__name__} as AMF0")


def encode_values(values: Iterable[object]) -> bytes:
    """Encode ``values`` one after another as AMF0; raises :class:`AmfError`."""
    out = bytearray()
    for value in values:
        _encode(out, value, 0)
    return bytes(out)
