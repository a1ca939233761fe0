"""The Anthropic client dialect in isolation: parsing, stop reasons, errors, frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi.sse import format_sse_event

from gateway.dialects.anthropic import (
    ANTHROPIC,
    MessagesEncoder,
    MessagesRequest,
    anthropic_stop_reason,
    forwarded_headers,
    message_body,
)
from gateway.errors import (
    BadRequest,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotAllowed,
    NotFound,
    RateLimited,
    RequestTooLarge,
    Unauthorized,
    Unavailable,
    UnknownModel,
    UpstreamAuth,
    UpstreamOverloaded,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_for_status,
)
from gateway.models import Attempt
from gateway.parts import Text
from gateway.providers.base import StreamOutcome, Usage
from gateway.relay import Relay

USER = [{"role": "user", "content": "hi"}]


def parse(**fields: Any) -> MessagesRequest:
    return MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 5, "messages": USER, **fields}
    )


async def _nothing() -> AsyncIterator[str]:
    return
    yield


def relay(outcome: StreamOutcome | None = None) -> Relay:
    attempt = Attempt("entry", None, "up")  # type: ignore[arg-type]
    return Relay(attempt, "first", _nothing(), outcome or StreamOutcome())


def test_text_blocks_and_system_blocks_become_one_string_each() -> None:
    request = parse(
        system=[{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {}}]},
            {"role": "assistant", "content": "b"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
            },
        ],
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
    ).translated()
    assert request.system == "be brief\n\nbe kind"
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c\n\nd"),
    ]
    assert (request.stop, request.temperature, request.top_p, request.max_tokens) == (
        ["END"],
        0.5,
        0.9,
        5,
    )


def test_empty_stop_sequences_and_system_are_none() -> None:
    request = parse(stop_sequences=[], system="").translated()
    assert request.stop is None and request.system is None


def test_text_block_without_text_is_refused() -> None:
    with pytest.raises(BadRequest, match="needs `text`"):
        parse(messages=[{"role": "user", "content": [{"type": "text"}]}]).translated()


def test_anthropic_only_fields_are_kept_apart() -> None:
    request = parse(
        top_k=5,
        metadata={"user_id": "u-1"},
        service_tier="auto",
        inference_geo="us",
        speed="fast",
        cache_control={"type": "ephemeral"},
        output_config={"effort": "low"},
        diagnostics={"previous_message_id": "msg_1"},
        workspace_id="wrkspc_1",
        user_profile_id="p",
    )
    assert request.anthropic_params() == {
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "service_tier": "auto",
        "inference_geo": "us",
        "speed": "fast",
        "cache_control": {"type": "ephemeral"},
        "output_config": {"effort": "low"},
    }
    assert parse().anthropic_params() == {}
    assert parse(metadata={}).anthropic_params() == {}


def test_only_anthropic_version_and_beta_are_forwarded() -> None:
    headers = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "a-2025-01-01,b",
        "x-api-key": "client-secret",
        "authorization": "Bearer client-secret",
    }
    assert forwarded_headers(headers) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "a-2025-01-01,b",
    }
    assert forwarded_headers({}) == {}
    with pytest.raises(BadRequest, match="anthropic-beta"):
        forwarded_headers({"anthropic-beta": "x" * 1025})
    with pytest.raises(BadRequest, match="anthropic-version"):
        forwarded_headers({"anthropic-version": "ünïcode"})


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (None, "end_turn"),
        ("stop", "end_turn"),
        ("STOP", "end_turn"),
        ("end_turn", "end_turn"),
        ("pause_turn", "pause_turn"),
        ("stop_sequence", "stop_sequence"),
        ("length", "max_tokens"),
        ("MAX_TOKENS", "max_tokens"),
        ("max_tokens", "max_tokens"),
        ("model_context_window_exceeded", "model_context_window_exceeded"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("SAFETY", "refusal"),
        ("blocked:PROHIBITED_CONTENT", "refusal"),
        ("refusal", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_stop_reasons_from_every_provider(reason: str | None, expected: str) -> None:
    assert anthropic_stop_reason(reason) == expected


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error"),
        (BadRequest("x"), 400, "invalid_request_error"),
        (RequestTooLarge("x"), 413, "request_too_large"),
        (UnknownModel("x", model="x"), 404, "not_found_error"),
        (NotFound("x"), 404, "not_found_error"),
        (MethodNotAllowed("x"), 405, "invalid_request_error"),
        (Unauthorized("x"), 401, "authentication_error"),
        (ModelNotAllowed("x", model="x"), 403, "permission_error"),
        (RateLimited("x", retry_after=7), 429, "rate_limit_error"),
        (UpstreamRejected("x"), 400, "invalid_request_error"),
        (UpstreamRateLimited("x"), 429, "rate_limit_error"),
        (UpstreamTimeout("x"), 504, "timeout_error"),
        (UpstreamOverloaded("x"), 529, "overloaded_error"),
        (Unavailable("x"), 529, "overloaded_error"),
        (UpstreamUnavailable("x"), 500, "api_error"),
        (UpstreamAuth("x"), 500, "api_error"),
        (UpstreamProtocolError("x"), 500, "api_error"),
        (GatewayError("x"), 500, "api_error"),
    ],
)
def test_error_status_and_type_pairs(error: GatewayError, status: int, kind: str) -> None:
    reply = ANTHROPIC.error_reply(error, "req-1")
    assert reply.status == status
    assert reply.body == {
        "type": "error",
        "error": {"type": kind, "message": "x"},
        "request_id": "req-1",
    }
    if status in (429, 529):
        assert reply.headers["Retry-After"] == ("7" if isinstance(error, RateLimited) else "1")
    else:
        assert "Retry-After" not in reply.headers


def test_unauthorized_keeps_its_challenge() -> None:
    headers = ANTHROPIC.error_reply(Unauthorized("x"), "r").headers
    assert headers == {"WWW-Authenticate": "Bearer", "request-id": "r"}


@pytest.mark.parametrize("status", [503, 529])
def test_overloaded_upstreams_keep_their_retry_after(status: int) -> None:
    error = error_for_status(status, "busy", retry_after=12)
    assert isinstance(error, UpstreamOverloaded)
    assert (error.status, error.type) == (502, "upstream_unavailable")
    assert ANTHROPIC.error_reply(error, "r").headers["Retry-After"] == "12"


def test_delta_template_is_what_format_sse_event_writes() -> None:
    encoder = MessagesEncoder(relay(), "sid", "req")
    assert encoder.delta("").startswith(b"event: content_block_start\n")  # opens block 0
    for text in ["plain", 'q"uote\\', "line\nbreak\u2028", "😀 中文", ""]:
        data = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        expected = format_sse_event(
            data_str=orjson.dumps(data).decode(), event="content_block_delta"
        )
        assert encoder.delta(text) == expected
    assert encoder.deltas == 6


def events(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in frames.decode().split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        found.append((event_line.removeprefix("event: "), orjson.loads(data_line[6:])))
    assert all(name == data["type"] for name, data in found)
    return found


def test_opening_carries_input_tokens_when_known() -> None:
    outcome = StreamOutcome(usage=Usage(11, 1))
    encoder = MessagesEncoder(relay(outcome), "sid", "r")
    (start,) = events(encoder.opening())
    (block, _) = events(encoder.delta("hi"))  # the first text delta opens the text block
    assert start[1]["message"] == {
        "id": "msg_sid",
        "type": "message",
        "role": "assistant",
        "model": "entry",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 0},
    }
    assert block[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    unknown = events(MessagesEncoder(relay(), "sid", "r").opening())[0][1]
    assert unknown["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_closing_has_stop_reason_and_cumulative_usage() -> None:
    outcome = StreamOutcome(finish_reason="length", usage=Usage(3, 9))
    (frames,) = MessagesEncoder(relay(outcome), "sid", "r").closing()
    assert [name for name, _ in events(frames)] == [
        "content_block_start",  # an answer without blocks is one empty text block
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = events(frames)[2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 9, "input_tokens": 3}


def test_closing_estimates_output_tokens_without_usage() -> None:
    encoder = MessagesEncoder(relay(), "sid", "r")
    encoder.delta("a")
    encoder.delta("b")
    delta = events(encoder.closing()[0])[1][1]
    assert delta["usage"] == {"output_tokens": 2}  # the text block was open: stop, delta
    assert delta["delta"]["stop_reason"] == "end_turn"


def test_error_frame_is_the_envelope_under_event_error() -> None:
    frame = MessagesEncoder(relay(), "sid", "req-9").error_frame(UpstreamOverloaded("busy"))
    assert events(frame) == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "busy"},
                "request_id": "req-9",
            },
        )
    ]


def test_ping_is_anthropics_ping_event() -> None:
    assert MessagesEncoder.keepalive == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_message_body() -> None:
    outcome = StreamOutcome(finish_reason="end_turn", usage=Usage(4, None))
    body = message_body(relay(outcome), "sid", [Text("hello")], deltas=2)
    assert body == {
        "id": "msg_sid",
        "type": "message",
        "role": "assistant",
        "model": "entry",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 2},
    }
    empty = message_body(relay(), "s", [], 0)
    assert empty["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert empty["content"] == [{"type": "text", "text": ""}]
