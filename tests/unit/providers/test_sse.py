from __future__ import annotations

import pytest

from gateway.providers._sse import SSEDecoder, SSEEvent
from tests.conftest import wire
from tests.splits import every_split, multibyte_splits


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events


@pytest.mark.parametrize("capture", ["openai/basic.sse", "anthropic/basic.sse", "gemini/basic.sse"])
def test_sse_same_events_under_every_split(capture: str) -> None:
    body = wire(capture)
    whole = decode([body])
    assert len(whole) >= 3
    for pieces in every_split(body):
        assert decode(pieces) == whole
    for pieces in multibyte_splits(body):
        assert decode(pieces) == whole


def test_sse_crlf_split_between_cr_and_lf_dispatches_once() -> None:
    assert decode([b"data: a\r", b"\n\r\ndata: b\r\n\r\n"]) == [
        SSEEvent("message", b"a"),
        SSEEvent("message", b"b"),
    ]


def test_sse_cr_only_framing_dispatches_without_waiting_for_more() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\r") == [SSEEvent("message", b"x")]


def test_sse_mixed_line_endings() -> None:
    assert decode([b"data: a\n\rdata: b\r\n\ndata: c\r\r"]) == [
        SSEEvent("message", b"a"),
        SSEEvent("message", b"b"),
        SSEEvent("message", b"c"),
    ]


def test_sse_data_without_space_and_with_two_spaces() -> None:
    assert decode([b"data:{}\n\ndata:  [DONE]\n\n"]) == [
        SSEEvent("message", b"{}"),
        SSEEvent("message", b" [DONE]"),
    ]


def test_sse_comments_are_ignored_anywhere() -> None:
    body = b': OPENROUTER PROCESSING\n\ndata: {"a":\n: ka\ndata: 1}\n\n: ping - 2026\r\n\r\n'
    assert decode([body]) == [SSEEvent("message", b'{"a":\n1}')]


def test_sse_multiline_data_is_joined_with_lf() -> None:
    assert decode([b'data: {"x":\ndata: "y"}\n\n']) == [SSEEvent("message", b'{"x":\n"y"}')]


def test_sse_leading_bom_does_not_lose_the_first_event() -> None:
    assert decode([b"\xef\xbb", b"\xbfdata: 1\n\n"]) == [SSEEvent("message", b"1")]


def test_sse_bom_is_only_stripped_at_the_start() -> None:
    assert decode([b"data: 1\n\n\xef\xbb\xbfdata: 2\n\n"]) == [SSEEvent("message", b"1")]


def test_sse_events_without_data_dispatch_nothing() -> None:
    assert decode([b"event: ping\n\nid: 5\n\nretry: 3000\n\n"]) == []


def test_sse_event_name_applies_to_its_own_event_only() -> None:
    assert decode([b"event: error\ndata: 1\n\ndata: 2\n\n"]) == [
        SSEEvent("error", b"1"),
        SSEEvent("message", b"2"),
    ]


def test_sse_bare_data_line_is_an_empty_value() -> None:
    assert decode([b"data\ndata: x\n\n"]) == [SSEEvent("message", b"\nx")]


def test_sse_legacy_llamacpp_error_field_is_an_error_event() -> None:
    body = b'data: {"c":"Hi"}\n\nerror: {"code":500,"message":"boom"}\n\ndata: [DONE]\n\n'
    assert decode([body]) == [
        SSEEvent("message", b'{"c":"Hi"}'),
        SSEEvent("error", b'{"code":500,"message":"boom"}'),
        SSEEvent("message", b"[DONE]"),
    ]


def test_sse_partial_event_at_eof_is_not_dispatched() -> None:
    assert decode([b'data: {"choices":[{"delta":{"content":"Hel']) == []


def test_sse_raw_unicode_separators_do_not_split_lines() -> None:
    body = 'data: {"t":"a\u2028b\u2029c\u0085d"}\n\n'.encode()
    assert decode([body]) == [SSEEvent("message", '{"t":"a\u2028b\u2029c\u0085d"}'.encode())]


def test_sse_huge_event_fed_in_small_pieces_is_linear_and_exact() -> None:
    payload = b"x" * 2_000_000
    body = b"data: " + payload + b"\n\n"
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    assert decode(pieces) == [SSEEvent("message", payload)]


def test_sse_burst_of_events_in_one_read_keeps_order() -> None:
    body = b"".join(b"data: %d\n\n" % i for i in range(100))
    assert [e.data for e in decode([body])] == [b"%d" % i for i in range(100)]
