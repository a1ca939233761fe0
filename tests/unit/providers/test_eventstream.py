"""AWS event-stream framing (Bedrock): messages decoded from bytes cut anywhere, CRCs checked,
and nothing but `UpstreamProtocolError` out of any bytes at all (Hypothesis)."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import UpstreamProtocolError
from gateway.providers._eventstream import EventStreamDecoder, Frame
from gateway.providers._sse import SSEEvent
from gateway.providers.bedrock import ClaudeEvents
from tests.e2e.cloud_fakes import claude_chunk, event, exception, frame
from tests.splits import every_split

# Test vectors from botocore's tests/unit/test_eventstream.py (Apache-2.0): bytes and meaning.
EMPTY_MESSAGE = b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff"
ONE_STRING_HEADER = (
    b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10"
    b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1"
)
ERROR_MESSAGE = (
    b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
    b"\x0d:message-type\x07\x00\x05error"
    b"\x0b:error-code\x07\x00\x04code"
    b"\x0e:error-message\x07\x00\x07message"
    b"\x6b\x6c\xea\x3d"
)
CORRUPTED = {
    "payload": b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96",
    "length": b"\x01\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96",
    "headers": (
        b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent+type\x07\x00\x10"
        b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1"
    ),
}


def decode(pieces: list[bytes], limit: int = 1024 * 1024) -> list[Frame]:
    decoder = EventStreamDecoder(limit)
    frames: list[Frame] = []
    for piece in pieces:
        frames.extend(decoder.feed(piece))
    assert decoder.pending == 0
    return frames


def test_botocore_vectors_under_every_split() -> None:
    body = EMPTY_MESSAGE + ONE_STRING_HEADER + ERROR_MESSAGE
    expected = [
        Frame("event", "", b""),
        Frame("event", "", b"{'foo':'bar'}"),
        Frame("error", "code", b""),
    ]
    for pieces in every_split(body):
        assert decode(pieces) == expected


@pytest.mark.parametrize("name", list(CORRUPTED))
def test_corrupted_vectors_are_protocol_errors_under_every_split(name: str) -> None:
    for pieces in every_split(CORRUPTED[name]):
        with pytest.raises(UpstreamProtocolError, match="broken event-stream message"):
            decode(pieces)


def test_a_bad_crc_after_good_messages_hands_those_out_first() -> None:
    good = event("contentBlockDelta", {"delta": {"text": "a"}})
    bad = event("contentBlockDelta", {"delta": {"text": "b"}})
    bad = bad[:-1] + bytes([bad[-1] ^ 0xFF])
    decoder = EventStreamDecoder(1024 * 1024)
    assert [f.name for f in decoder.feed(good)] == ["contentBlockDelta"]
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(bad)


def test_an_unfinished_message_is_bounded_by_max_event_bytes() -> None:
    big = frame({":message-type": "event"}, b"x" * 5000)
    decoder = EventStreamDecoder(1024)
    assert decoder.feed(big[:1000]) == []
    assert decoder.pending == 1000
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(big[1000:2000])


def test_a_message_shorter_than_its_own_framing_is_a_protocol_error() -> None:
    # 12 bytes, all prelude: its "message CRC" is the prelude's own CRC, which checks out over
    # no bytes at all; botocore would hand it out as an empty message.
    prelude = struct.pack(">II", 12, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(UpstreamProtocolError):
        decode([prelude])


HEADER_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.tuples(HEADER_TEXT, st.binary(max_size=300)), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_valid_frames_cut_anywhere_decode_as_whole(
    messages: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    body = b"".join(
        frame({":message-type": "event", ":event-type": name}, payload)
        for name, payload in messages
    )
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(pieces) == [Frame("event", name, payload) for name, payload in messages]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_any_bytes_give_frames_or_a_protocol_error(pieces: list[bytes]) -> None:
    decoder = EventStreamDecoder(4096)
    try:
        for piece in pieces:
            decoder.feed(piece)
    except UpstreamProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=199))
def test_a_flipped_byte_in_a_real_frame_never_passes_unnoticed(payload: bytes, where: int) -> None:
    body = frame({":message-type": "event", ":event-type": "chunk"}, payload)
    where %= len(body)
    broken = body[:where] + bytes([body[where] ^ 0x01]) + body[where + 1 :]
    try:
        frames = EventStreamDecoder(1024 * 1024).feed(broken)
    except UpstreamProtocolError:
        return
    # Only a length change can leave the message unfinished: then nothing is handed out.
    assert frames == []


def claude(pieces: list[bytes], *, raw: bool) -> list[object]:
    decoder = ClaudeEvents(1024 * 1024, raw=raw)
    found: list[object] = []
    for piece in pieces:
        found.extend(decoder.feed(piece))
    return found


def test_claude_chunks_become_anthropic_events_under_every_split() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"text": "é"}}
    body = claude_chunk(start) + claude_chunk(delta)
    expected_raw = [
        f"event: {each['type']}\ndata: {json.dumps(each, separators=(',', ':'))}\n\n"
        for each in (start, delta)
    ]
    for pieces in every_split(body):
        raw = claude(pieces, raw=True)
        assert "".join(raw).encode("latin-1").decode() == "".join(expected_raw)
    events = claude([body], raw=False)
    assert [e.event for e in events if isinstance(e, SSEEvent)] == [
        "message_start",
        "content_block_delta",
    ]


def test_claude_event_whose_type_is_not_first_is_still_named() -> None:
    data = base64.b64encode(b'{"index":0,"type":"content_block_stop"}').decode()
    (found,) = claude([event("chunk", {"bytes": data})], raw=False)
    assert found == SSEEvent("content_block_stop", b'{"index":0,"type":"content_block_stop"}')


def test_claude_exception_frame_becomes_an_error_event() -> None:
    (found,) = claude([exception("throttlingException", "Too many tokens")], raw=False)
    assert isinstance(found, SSEEvent) and found.event == "error"
    assert json.loads(found.data)["error"] == {
        "type": "throttlingException",
        "message": "Too many tokens",
    }


def test_claude_unknown_events_are_skipped() -> None:
    assert claude([event("somethingNew", {"x": 1})], raw=True) == []


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"bytes": "%%% not base64"}, "not base64"),
        ({"bytes": base64.b64encode(b'{"index":0}').decode()}, "without a type"),
        ({"bytes": 12}, "number"),
    ],
)
def test_broken_claude_chunks_are_protocol_errors(payload: dict[str, object], match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match):
        claude([event("chunk", payload)], raw=False)


def test_an_exception_frame_without_a_json_body_is_named_by_its_type() -> None:
    headers = {":message-type": "exception", ":exception-type": "internalServerException"}
    (found,) = claude([frame(headers, b"<html>oops</html>")], raw=False)
    assert isinstance(found, SSEEvent)
    assert json.loads(found.data)["error"] == {
        "type": "internalServerException",
        "message": "internalServerException",
    }
