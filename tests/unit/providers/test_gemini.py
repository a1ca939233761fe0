from __future__ import annotations

import json

import httpx
import orjson
import respx

from gateway.errors import UpstreamProtocolError, UpstreamUnavailable
from tests.conftest import CANARY_KEY, wire
from tests.splits import every_split, multibyte_splits
from tests.unit.providers.helpers import chat, collect, make_adapter, mock


def sse(*objects: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(o) + b"\n\n" for o in objects)


def candidate(*texts: str, finish: str | None = None) -> dict[str, object]:
    parts = [{"text": t} for t in texts]
    body: dict[str, object] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        body["finishReason"] = finish
    return {"candidates": [body]}


async def test_gemini_exact_text_usage_and_finish_under_every_split(
    respx_mock: respx.MockRouter,
) -> None:
    body = wire("gemini/basic.sse")
    adapter = make_adapter("gemini")
    for pieces in [*every_split(body), *multibyte_splits(body)]:
        mock(respx_mock, "gemini", pieces)
        deltas, outcome, error = await collect(adapter)
        assert error is None
        assert deltas == ["The capital", " of Fränce", " is Paris. 🗼"]  # no thought part
        assert outcome.finish_reason == "STOP"
        assert outcome.usage is not None
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (8, 7)


async def test_gemini_request_url_headers_and_body(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, "gemini", [sse(candidate("x", finish="STOP"))])
    request = chat(system="sys", max_tokens=5, temperature=0.1, top_p=0.2, stop=("Z",))
    await collect(make_adapter("gemini"), request)
    sent = route.calls.last.request
    assert str(sent.url).endswith("/v1beta/models/m-1:streamGenerateContent?alt=sse")
    assert sent.headers["x-goog-api-key"] == CANARY_KEY
    assert "key=" not in str(sent.url)
    assert json.loads(sent.content) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "generationConfig": {
            "maxOutputTokens": 5,
            "temperature": 0.1,
            "topP": 0.2,
            "stopSequences": ["Z"],
        },
    }


async def test_gemini_model_name_cannot_walk_the_url_path(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(url__regex=r".*").mock(
        return_value=httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=sse(candidate("x", finish="STOP")),
        )
    )
    await collect(make_adapter("gemini"), chat(model="../../v1/files"))
    path = route.calls.last.request.url.raw_path.decode()
    assert path.startswith("/v1beta/models/..%2F..%2Fv1%2Ffiles:streamGenerateContent")


async def test_gemini_error_object_inside_the_stream(respx_mock: respx.MockRouter) -> None:
    error_event = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    mock(respx_mock, "gemini", [sse(candidate("a"), error_event)])
    deltas, _, error = await collect(make_adapter("gemini"))
    assert deltas == ["a"]
    assert isinstance(error, UpstreamUnavailable)
    assert error.message == "overloaded"


async def test_gemini_blocked_prompt_has_no_candidates(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "gemini", [sse({"promptFeedback": {"blockReason": "SAFETY"}})])
    deltas, outcome, error = await collect(make_adapter("gemini"))
    assert (deltas, outcome.finish_reason, error) == ([], "blocked:SAFETY", None)


async def test_gemini_safety_finish_mid_stream(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "gemini", [sse(candidate("a"), candidate(finish="SAFETY"))])
    deltas, outcome, error = await collect(make_adapter("gemini"))
    assert (deltas, outcome.finish_reason, error) == (["a"], "SAFETY", None)


async def test_gemini_no_finish_reason_is_truncated(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "gemini", [sse(candidate("a"))])
    _, _, error = await collect(make_adapter("gemini"))
    assert isinstance(error, UpstreamProtocolError)


async def test_gemini_usage_only_chunk_and_last_usage_wins(respx_mock: respx.MockRouter) -> None:
    body = sse(
        {"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1}},
        candidate("a", finish="STOP"),
        {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}},
    )
    mock(respx_mock, "gemini", [body])
    _, outcome, _ = await collect(make_adapter("gemini"))
    assert outcome.usage is not None and outcome.usage.total_tokens == 7
