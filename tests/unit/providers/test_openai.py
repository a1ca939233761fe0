from __future__ import annotations

import json

import orjson
import respx

from gateway.errors import UpstreamProtocolError, UpstreamRateLimited, UpstreamUnavailable
from gateway.parts import ReasoningDelta
from tests.conftest import CANARY_KEY, wire
from tests.splits import every_split, multibyte_splits
from tests.unit.providers.helpers import chat, collect, collect_all, make_adapter, mock

EXPECTED = "The quick 😀 fox 中文 line\u2028sep nel\u0085!"


def sse(*objects: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(o) + b"\n\n" for o in objects)


def chunk(content: object = None, finish: str | None = None, index: int = 0) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


async def test_openai_exact_text_usage_and_finish_under_every_split(
    respx_mock: respx.MockRouter,
) -> None:
    body = wire("openai/basic.sse")
    adapter = make_adapter("openai")
    splits = [*every_split(body), *multibyte_splits(body)]
    for pieces in splits:
        mock(respx_mock, "openai", pieces)
        deltas, outcome, error = await collect(adapter)
        assert error is None
        assert "".join(deltas) == EXPECTED
        assert len(deltas) == 6  # one per upstream delta; the role-only chunk yields nothing
        assert outcome.finish_reason == "stop"
        assert outcome.usage is not None
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (19, 6)
        assert outcome.model == "gpt-4.1-2025-04-14"


async def test_openai_request_url_headers_and_body(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, "openai", [sse(chunk("x", "stop")) + b"data: [DONE]\n\n"])
    adapter = make_adapter("openai", headers={"OpenAI-Organization": "org-1"})
    request = chat(
        model="gpt-4o-mini",
        system="be brief",
        max_tokens=5,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        extra={"seed": 7},
    )
    await collect(adapter, request)
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {CANARY_KEY}"
    assert sent.headers["openai-organization"] == "org-1"
    assert json.loads(sent.content) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 5,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
    }


async def test_openai_compatible_server_without_key_sends_no_authorization(
    respx_mock: respx.MockRouter,
) -> None:
    route = mock(respx_mock, "openai", [sse(chunk("x", "stop")) + b"data: [DONE]\n\n"])
    await collect(make_adapter("openai", api_key=None))
    assert "authorization" not in route.calls.last.request.headers


async def test_openai_error_event_after_text_keeps_text_and_raises(
    respx_mock: respx.MockRouter,
) -> None:
    mock(respx_mock, "openai", [wire("openai/stream_error.sse")])
    deltas, _, error = await collect(make_adapter("openai"))
    assert deltas == ["Hello"]
    assert isinstance(error, UpstreamUnavailable)
    assert "server had an error" in error.message


async def test_openai_error_as_first_event_of_a_200_then_done(respx_mock: respx.MockRouter) -> None:
    # vLLM: data: {"error": …} and then data: [DONE], on an HTTP 200.
    body = sse({"error": {"message": "bad", "type": "BadRequestError", "code": 400}})
    mock(respx_mock, "openai", [body + b"data: [DONE]\n\n"])
    deltas, _, error = await collect(make_adapter("openai"))
    assert deltas == []
    assert error is not None and error.message == "bad"


async def test_openai_rate_limit_error_event_is_classified(respx_mock: respx.MockRouter) -> None:
    body = sse(chunk("a"), {"error": {"message": "slow down", "type": "rate_limit_exceeded"}})
    mock(respx_mock, "openai", [body])
    _, _, error = await collect(make_adapter("openai"))
    assert isinstance(error, UpstreamRateLimited)


async def test_openai_legacy_llamacpp_error_field_is_an_error(respx_mock: respx.MockRouter) -> None:
    body = sse(chunk("Hi")) + b'error: {"code":500,"message":"boom"}\n\ndata: [DONE]\n\n'
    mock(respx_mock, "openai", [body])
    deltas, _, error = await collect(make_adapter("openai"))
    assert deltas == ["Hi"]
    assert error is not None and error.message == "boom"


async def test_openai_openrouter_unified_error_chunk(respx_mock: respx.MockRouter) -> None:
    unified = {
        "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    mock(respx_mock, "openai", [sse(chunk("Hi"), unified)])
    deltas, _, error = await collect(make_adapter("openai"))
    assert deltas == ["Hi"]
    assert isinstance(error, UpstreamUnavailable)
    assert error.message == "Provider disconnected unexpectedly"


async def test_openai_finish_reason_error_without_error_object(
    respx_mock: respx.MockRouter,
) -> None:
    mock(respx_mock, "openai", [sse(chunk("Hi"), chunk(None, "error"))])
    _, _, error = await collect(make_adapter("openai"))
    assert isinstance(error, UpstreamUnavailable)


async def test_openai_finish_without_done_is_accepted(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "openai", [sse(chunk("Hi"), chunk(None, "stop"))])
    deltas, outcome, error = await collect(make_adapter("openai"))
    assert (deltas, outcome.finish_reason, error) == (["Hi"], "stop", None)


async def test_openai_no_done_and_no_finish_is_truncated(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "openai", [sse(chunk("Hi"))])
    _, _, error = await collect(make_adapter("openai"))
    assert isinstance(error, UpstreamProtocolError)


async def test_openai_empty_null_and_role_only_deltas_are_skipped(
    respx_mock: respx.MockRouter,
) -> None:
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    body = sse(
        role,
        chunk("a"),
        chunk(None),
        chunk(""),
        {"choices": [{"index": 0, "delta": None}]},
        chunk("b"),
        chunk(None, "stop"),
    )
    mock(respx_mock, "openai", [body + b"data: [DONE]\n\n"])
    deltas, _, error = await collect(make_adapter("openai"))
    assert (deltas, error) == (["a", "b"], None)


async def test_openai_usage_chunk_with_null_or_missing_choices(
    respx_mock: respx.MockRouter,
) -> None:
    for usage_chunk in (
        {"choices": None, "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
        {"usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    ):
        mock(respx_mock, "openai", [sse(chunk("a", "stop"), usage_chunk) + b"data: [DONE]\n\n"])
        _, outcome, error = await collect(make_adapter("openai"))
        assert error is None
        assert outcome.usage is not None and outcome.usage.total_tokens == 3


async def test_openai_groq_usage_and_error(respx_mock: respx.MockRouter) -> None:
    final = {
        **chunk(None, "stop"),
        "x_groq": {"usage": {"prompt_tokens": 4, "completion_tokens": 5}},
    }
    mock(respx_mock, "openai", [sse(chunk("a"), final) + b"data: [DONE]\n\n"])
    _, outcome, _ = await collect(make_adapter("openai"))
    assert outcome.usage is not None and outcome.usage.total_tokens == 9
    mock(respx_mock, "openai", [sse(chunk("a"), {"choices": [], "x_groq": {"error": "stopped"}})])
    _, _, error = await collect(make_adapter("openai"))
    assert isinstance(error, UpstreamUnavailable)


async def test_openai_mistral_list_content_relays_text_parts_only(
    respx_mock: respx.MockRouter,
) -> None:
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "no"}]},
        {"type": "text", "text": "Hi"},
    ]
    mock(respx_mock, "openai", [sse(chunk(parts), chunk(None, "stop")) + b"data: [DONE]\n\n"])
    deltas, _, _ = await collect(make_adapter("openai"))
    assert deltas == ["Hi"]


async def test_openai_only_choice_zero_is_relayed(respx_mock: respx.MockRouter) -> None:
    body = sse(chunk("a", index=0), chunk("X", index=1), chunk("b", index=0), chunk(None, "stop"))
    mock(respx_mock, "openai", [body + b"data: [DONE]\n\n"])
    deltas, _, _ = await collect(make_adapter("openai"))
    assert deltas == ["a", "b"]


async def test_openai_reasoning_is_a_part_and_a_call_without_a_start_is_broken(
    respx_mock: respx.MockRouter,
) -> None:
    reasoning = {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}
    mock(respx_mock, "openai", [sse(reasoning, chunk("ok", "stop")) + b"data: [DONE]\n\n"])
    deltas, outcome, error = await collect_all(make_adapter("openai"))
    assert (deltas, outcome.finish_reason, error) == ([ReasoningDelta("hmm"), "ok"], "stop", None)
    # Arguments for a call whose id and name never came: not text, and not a call either.
    tool = {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]}}
        ]
    }
    mock(respx_mock, "openai", [sse(tool, chunk("ok", "tool_calls")) + b"data: [DONE]\n\n"])
    deltas, _, error = await collect_all(make_adapter("openai"))
    assert deltas == [] and isinstance(error, UpstreamProtocolError)


async def test_openai_refusal_text_is_relayed(respx_mock: respx.MockRouter) -> None:
    refusal = {"choices": [{"index": 0, "delta": {"refusal": "I can't help with that."}}]}
    mock(respx_mock, "openai", [sse(refusal, chunk(None, "stop")) + b"data: [DONE]\n\n"])
    deltas, _, _ = await collect(make_adapter("openai"))
    assert deltas == ["I can't help with that."]


async def test_openai_data_after_done_is_ignored(respx_mock: respx.MockRouter) -> None:
    body = sse(chunk("a", "stop")) + b"data: [DONE]\n\n" + sse(chunk("late"))
    mock(respx_mock, "openai", [body])
    deltas, _, error = await collect(make_adapter("openai"))
    assert (deltas, error) == (["a"], None)


async def test_openai_keepalive_comments_crlf_and_missing_space(
    respx_mock: respx.MockRouter,
) -> None:
    body = (
        b": OPENROUTER PROCESSING\r\n\r\n"
        b'data:{"choices":[{"index":0,"delta":{"content":"a"}}]}\r\n\r\n'
        b": ping - 2026-11-25\r\n\r\n"
        b'data:  {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\r\n\r\n'
        b"data:  [DONE]\r\n\r\n"
    )
    mock(respx_mock, "openai", [body])
    deltas, _, error = await collect(make_adapter("openai"))
    assert (deltas, error) == (["a", "b"], None)


async def test_openai_leading_bom_keeps_first_event(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "openai", [b"\xef\xbb\xbf" + sse(chunk("a", "stop")) + b"data: [DONE]\n\n"])
    deltas, _, _ = await collect(make_adapter("openai"))
    assert deltas == ["a"]


async def test_openai_invalid_utf8_becomes_replacement_character(
    respx_mock: respx.MockRouter,
) -> None:
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"a\xffb"},"finish_reason":"stop"}]}\n\n'
    )
    mock(respx_mock, "openai", [body + b"data: [DONE]\n\n"])
    deltas, _, error = await collect(make_adapter("openai"))
    assert (deltas, error) == (["a\ufffdb"], None)
