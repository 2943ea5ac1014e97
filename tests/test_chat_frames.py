"""Client frame parsing and comment cleaning, without I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.chat.frames import (
    AuthFrame, CommentFrame, FrameError, GiftFrame, LikeFrame, PingFrame, clean_comment, encode, parse_client_frame,
)

LIMIT = 4096


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"type":"comment","text":"hi"}', CommentFrame("hi")),
    ('{"type":"like"}', LikeFrame(1)),
    ('{"type":"like","count":50}', LikeFrame(50)),
    ('{"type":"like","count":null}', LikeFrame(1)),
    ('{"type":"gift","gift":"rose"}', GiftFrame("rose", 1)),
    ('{"type":"gift","gift":"rose","quantity":100,"extra":1}', GiftFrame("rose", 100)),
    ('{"type":"auth","token":"abc"}', AuthFrame("abc")),
    ('{"type":"ping"}', PingFrame()),
])
def test_valid_frames(raw: str, expected: object) -> None:
    assert parse_client_frame(raw, LIMIT) == expected


@pytest.mark.parametrize(("raw", "code"), [
    ("", "invalid_json"),
    ("{", "invalid_json"),
    ("null", "invalid_json"),
    ('"comment"', "invalid_json"),
    ("{}", "invalid_frame"),
    ('{"type":1}', "invalid_frame"),
    ('{"type":"COMMENT","text":"x"}', "unknown_type"),
    ('{"type":"comment"}', "invalid_frame"),
    ('{"type":"comment","text":["x"]}', "invalid_frame"),
    ('{"type":"like","count":0}', "invalid_frame"),
    ('{"type":"like","count":1.5}', "invalid_frame"),
    ('{"type":"gift"}', "invalid_frame"),
    ('{"type":"gift","gift":"rose","quantity":0}', "invalid_frame"),
    ('{"type":"gift","gift":"rose","quantity":false}', "invalid_frame"),
    ('{"type":"auth","token":null}', "invalid_frame"),
    ('{"type":"auth","token":"' + "t" * 300 + '"}', "invalid_frame"),
])
def test_invalid_frames(raw: str, code: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame(raw, LIMIT)
    assert info.value.code == code


def test_size_is_counted_in_utf8_bytes() -> None:
    text = "é" * 2100  # 2100 characters, 4200 bytes
    with pytest.raises(FrameError) as info:
        parse_client_frame(json.dumps({"type": "comment", "text": text}, ensure_ascii=False), LIMIT)
    assert info.value.code == "too_large"


@pytest.mark.slow
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_cleanly(raw: str) -> None:
    try:
        parse_client_frame(raw, LIMIT)
    except FrameError as err:
        assert err.code in ("invalid_json", "invalid_frame", "unknown_type", "too_large")


@given(st.text(max_size=600))
def test_cleaned_comments_are_safe_to_store_and_stable(text: str) -> None:
    try:
        cleaned = clean_comment(text, 500)
    except FrameError as err:
        assert err.code in ("empty_comment", "too_long")
        return
    assert cleaned == cleaned.strip() and 1 <= len(cleaned) <= 500
    cleaned.encode("utf-8")  # no lone surrogates
    assert all(c == "\n" or not (ord(c) < 32 or 0x7F <= ord(c) <= 0x9F) for c in cleaned)
    assert clean_comment(cleaned, 500) == cleaned


def test_cleaning_keeps_markup_and_newlines() -> None:
    assert clean_comment(" <b>&amp;</b>\r\n\r\nnext\rline ", 100) == "<b>&amp;</b>\n\nnext\nline"
    assert encode({"text": "<é>"}) == '{"text":"<é>"}'
