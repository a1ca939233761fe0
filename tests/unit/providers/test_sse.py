from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UpstreamProtocolError
from gateway.providers._sse import SSEDecoder, SSEEvent
from tests.conftest import wire
from tests.splits import every_split, multibyte_splits


def decode(pieces: list[bytes], limit: int = 1024 * 1024) -> list[SSEEvent]:
    decoder = SSEDecoder(limit)
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
    assert decode(pieces, limit=len(payload)) == [SSEEvent("message", payload)]


def test_sse_burst_of_events_in_one_read_keeps_order() -> None:
    body = b"".join(b"data: %d\n\n" % i for i in range(100))
    assert [e.data for e in decode([body])] == [b"%d" % i for i in range(100)]


CRLF_BODIES = [
    b"event: error\r\ndata: x\r\n\r\n",
    b'data: {"a":\r\ndata: 1}\r\n\r\nevent: e\r\ndata: c\r\n\r\n',
    b": ping\r\n\r\ndata: 1\r\rdata: 2\n\n",
]


@pytest.mark.parametrize("body", CRLF_BODIES)
def test_sse_empty_reads_anywhere_do_not_change_the_events(body: bytes) -> None:
    # An empty read between a CR and its LF once lost the pending LF: "event: error" was
    # read as a message and a two-line data was split in two.
    whole = decode([body])
    for cut in range(1, len(body)):
        assert decode([body[:cut], b"", body[cut:]]) == whole
        assert decode([body[:cut], b"", b"", body[cut:], b""]) == whole


def test_sse_cr_then_empty_read_then_lf_keeps_the_event_name() -> None:
    assert decode([b"event: error\r", b"", b"\ndata: x\r\n\r\n"]) == [SSEEvent("error", b"x")]


@pytest.mark.parametrize("piece", [10, 1000, 70_000])
def test_sse_line_over_the_limit_fails_at_the_read_that_crosses_it(piece: int) -> None:
    decoder = SSEDecoder(4096)
    fed = 0
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"data: ")
        while fed < 1_000_000:  # far past the limit: the error must come long before
            decoder.feed(b"x" * piece)
            fed += piece
    assert fed <= 4096 + piece


def test_sse_event_of_many_data_lines_over_the_limit_fails() -> None:
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decode([b"data: " + b"x" * 1000 + b"\n"] * 10, limit=4096)


def test_sse_events_under_the_limit_each_pass_however_many() -> None:
    body = b"".join(b"data: " + b"x" * 4000 + b"\n\n" for _ in range(100))
    assert len(decode([body], limit=4096)) == 100


def test_sse_events_before_an_overlong_line_are_handed_out_first() -> None:
    decoder = SSEDecoder(4096)
    assert decoder.feed(b"data: a\n\ndata: " + b"x" * 5000) == [SSEEvent("message", b"a")]
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"x")


@given(
    body=st.lists(
        st.sampled_from(
            [b"data: a", b"data:b", b"event: error", b": c", b"id: 1", b"\r", b"\n", b"\r\n", b"x"]
        ),
        max_size=30,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_sse_any_cutting_with_empty_reads_gives_the_same_events(
    body: bytes, cuts: list[int]
) -> None:
    points = sorted(min(cut, len(body)) for cut in cuts)  # repeated points make empty reads
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(pieces) == decode([body])


@given(
    body=st.lists(
        st.sampled_from(
            [
                b"data: a",
                b"data:  b ",
                b"data: {}",
                b"data:",
                b"event: x",
                b": c",
                b"\n",
                b"\n\n",
                b"\r\n",
                b"\xef",
            ]
        ),
        max_size=40,
    ).map(b"".join)
)
def test_sse_whole_reads_at_event_boundaries_decode_like_byte_by_byte(body: bytes) -> None:
    # After the first line, a read that starts at an event boundary takes the block path;
    # byte-by-byte reads never do (each read holds at most one newline).
    prime = b": start\n\n"
    assert decode([prime, body, body]) == decode(list(_bytes(prime + body + body)))


def _bytes(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def test_sse_one_data_line_over_the_limit_fails_on_the_block_path() -> None:
    decoder = SSEDecoder(8)
    assert decoder.feed(b"data: ok\n\n") == [SSEEvent("message", b"ok")]
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"data: 123456789\n\n")
