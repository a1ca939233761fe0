"""The native path's reading of upstream events (gateway.native): every byte relayed exactly
once, in order, however the body is cut; only the events that carry usage, the end or an
error are read."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.native import AnthropicNative, OpenAINative
from gateway.native.sse import RawEvents, bytes_of, fields
from gateway.providers.base import StreamOutcome
from tests.conftest import wire
from tests.splits import every_split

BODIES = [
    wire("anthropic/basic.sse"),
    wire("openai/basic.sse"),
    b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n\n\ndata: 4\r\n\r\n",
    b": comment\n\ndata: x\n\n\ndata: y\n\n",
    'data: {"t":"h\u00e9 \U0001f600"}\n\n'.encode() + b"data: \xff\xfe broken utf-8\n\n",
]


def relay(body: bytes, cuts: list[int]) -> tuple[bytes, list[str]]:
    splitter = RawEvents(1 << 20)
    out: list[str] = []
    start = 0
    for cut in [*cuts, len(body)]:
        out += splitter.feed(body[start:cut])
        start = cut
    return bytes_of(out) if out else b"", out


@pytest.mark.parametrize("body", BODIES)
def test_every_cut_relays_the_body_exactly(body: bytes) -> None:
    assert relay(body, [])[0] == body
    for cut in range(len(body) + 1):
        assert relay(body, [cut])[0] == body, cut


@pytest.mark.parametrize("body", BODIES)
def test_byte_by_byte_and_random_cuts_relay_the_body_exactly(body: bytes) -> None:
    for pieces in every_split(body):
        splitter = RawEvents(1 << 20)
        out = [event for piece in pieces for event in splitter.feed(piece)]
        assert bytes_of(out) == body, [len(piece) for piece in pieces]


@pytest.mark.parametrize("body", BODIES[2:])
def test_every_pair_of_cuts_relays_the_body_exactly(body: bytes) -> None:
    for first in range(len(body) + 1):
        for second in range(first, len(body) + 1):
            assert relay(body, [first, second])[0] == body, (first, second)


def test_byte_at_a_time_finds_the_same_fields() -> None:
    body = wire("anthropic/basic.sse")
    _, whole = relay(body, [])
    _, bytewise = relay(body, list(range(1, len(body))))
    assert [fields(e) for e in bytewise] == [fields(e) for e in whole]
    names = [fields(e)[0] for e in whole]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_fields_follow_the_sse_rules() -> None:
    assert fields("event: x\r\ndata: a\r\ndata:b\r\n: c\r\n\r\n") == ("x", b"a\nb")
    assert fields("data: [DONE]\n\n") == ("", b"[DONE]")


def test_an_unfinished_event_over_the_limit_fails() -> None:
    splitter = RawEvents(1024)
    splitter.feed(b"data: " + b"x" * 1000)
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        splitter.feed(b"x" * 100)


def anthropic_reader() -> AnthropicNative:
    return AnthropicNative({}, True, {}, False)


def read(native: Any, body: bytes) -> tuple[list[str], bool, StreamOutcome]:
    outcome, batch, ended = StreamOutcome(), [], False
    for event in RawEvents(1 << 20).feed(body):
        ended = native.on_event(event, outcome, batch)
        if ended:
            break
    return batch, ended, outcome


def test_anthropic_usage_stop_reason_and_end_are_read() -> None:
    batch, ended, outcome = read(anthropic_reader(), wire("anthropic/basic.sse"))
    assert ended and bytes_of(batch) == wire("anthropic/basic.sse")
    assert outcome.usage is not None
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (11, 6)
    assert outcome.finish_reason == "end_turn"


def test_anthropic_error_event_raises_and_is_not_relayed() -> None:
    native, outcome, batch = anthropic_reader(), StreamOutcome(), []
    events = RawEvents(1 << 20).feed(wire("anthropic/stream_error.sse"))
    with pytest.raises(UpstreamError, match="Overloaded"):
        for event in events:
            native.on_event(event, outcome, batch)
    assert not any("event: error" in event for event in batch)


def usage_chunk() -> bytes:
    return b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'


@pytest.mark.parametrize("wants_usage", [True, False])
def test_openai_usage_chunk_reaches_only_a_client_that_asked(wants_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if wants_usage else {}
    native = OpenAINative(options, True)
    content = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}\n\n'
    finish = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
    body = content + finish + usage_chunk() + b"data: [DONE]\n\n"
    batch, ended, outcome = read(native, body)
    assert ended
    expected = body if wants_usage else content + finish + b"data: [DONE]\n\n"
    assert bytes_of(batch) == expected
    assert outcome.usage is not None and outcome.usage.total_tokens == 5
    assert outcome.finish_reason == "stop"


def test_openai_error_chunk_raises() -> None:
    native = OpenAINative({}, True)
    with pytest.raises(UpstreamError, match="boom"):
        read(native, b'data: {"error":{"message":"boom","type":"server_error"}}\n\n')


def test_openai_stream_options_are_added_and_the_clients_kept() -> None:
    from gateway.models import Attempt

    native = OpenAINative({"model": "m", "stream_options": {"include_obfuscation": False}}, True)
    attempt = Attempt("m", None, "up-model", {"system": "be brief", "seed": 1})  # type: ignore[arg-type]
    body = native.body(attempt)
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert body["model"] == "up-model" and body["seed"] == 1
    assert "system" not in body  # the entry's system prompt is a message, in OpenAI's form
    assert not native.wants_usage
