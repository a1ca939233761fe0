from __future__ import annotations

import json

import respx

from gateway.errors import UpstreamProtocolError, UpstreamUnavailable
from gateway.providers.anthropic import DEFAULT_MAX_TOKENS
from tests.conftest import CANARY_KEY, wire
from tests.splits import every_split, multibyte_splits
from tests.unit.providers.helpers import chat, collect, make_adapter, mock


def event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


STOP = event("message_stop", '{"type":"message_stop"}')


async def test_anthropic_exact_text_usage_and_finish_under_every_split(
    respx_mock: respx.MockRouter,
) -> None:
    body = wire("anthropic/basic.sse")
    adapter = make_adapter("anthropic")
    for pieces in [*every_split(body), *multibyte_splits(body)]:
        mock(respx_mock, "anthropic", pieces)
        deltas, outcome, error = await collect(adapter)
        assert error is None
        assert deltas == ["Hello", ", wörld 😀"]  # the thinking delta is not relayed
        assert outcome.finish_reason == "end_turn"
        assert outcome.usage is not None
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (11, 6)
        assert outcome.model == "claude-3-opus-latest"


async def test_anthropic_request_url_headers_and_body(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, "anthropic", [STOP])
    await collect(make_adapter("anthropic"), chat(system="be brief", temperature=0.5, stop=("X",)))
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == CANARY_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert json.loads(sent.content) == {
        "model": "m-1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": True,
        "system": "be brief",
        "temperature": 0.5,
        "stop_sequences": ["X"],
    }


async def test_anthropic_max_tokens_and_top_p_are_passed(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, "anthropic", [STOP])
    await collect(make_adapter("anthropic"), chat(max_tokens=9, top_p=0.5))
    body = json.loads(route.calls.last.request.content)
    assert (body["max_tokens"], body["top_p"]) == (9, 0.5)


async def test_anthropic_overloaded_error_event_after_text(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "anthropic", [wire("anthropic/stream_error.sse")])
    deltas, _, error = await collect(make_adapter("anthropic"))
    assert deltas == ["Hel"]
    assert isinstance(error, UpstreamUnavailable)
    assert error.message == "Overloaded"


async def test_anthropic_non_text_deltas_and_unknown_events_are_ignored(
    respx_mock: respx.MockRouter,
) -> None:
    # (an input_json_delta belongs to a tool_use block: without one it is a broken stream,
    # tests/unit/providers/test_parts_stream.py)
    kinds = ["signature_delta", "citations_delta", "future_delta"]
    body = b"".join(
        event(
            "content_block_delta",
            json.dumps(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": kind, "text": "no", "partial_json": "{"},
                }
            ),
        )
        for kind in kinds
    )
    body += event("brand_new_event", '{"type":"brand_new_event"}')
    body += event("ping", '{"type": "ping"}')
    mock(respx_mock, "anthropic", [body + STOP])
    deltas, _, error = await collect(make_adapter("anthropic"))
    assert (deltas, error) == ([], None)


async def test_anthropic_refusal_with_no_text_is_an_empty_finish(
    respx_mock: respx.MockRouter,
) -> None:
    body = event(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"refusal"},"usage":{"output_tokens":0}}',
    )
    mock(respx_mock, "anthropic", [body + STOP])
    deltas, outcome, error = await collect(make_adapter("anthropic"))
    assert (deltas, outcome.finish_reason, error) == ([], "refusal", None)


async def test_anthropic_missing_message_stop_is_truncated(respx_mock: respx.MockRouter) -> None:
    body = wire("anthropic/basic.sse")
    mock(respx_mock, "anthropic", [body[: body.index(b"event: message_stop")]])
    deltas, _, error = await collect(make_adapter("anthropic"))
    assert deltas == ["Hello", ", wörld 😀"]
    assert isinstance(error, UpstreamProtocolError)
