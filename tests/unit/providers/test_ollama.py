from __future__ import annotations

import json

import orjson
import respx

from gateway.errors import UpstreamProtocolError, UpstreamUnavailable
from tests.conftest import CANARY_KEY, wire
from tests.splits import every_split, multibyte_splits
from tests.unit.providers.helpers import chat, collect, make_adapter, mock


def lines(*objects: object) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


async def test_ollama_exact_text_usage_and_finish_under_every_split(
    respx_mock: respx.MockRouter,
) -> None:
    body = wire("ollama/basic.ndjson")
    adapter = make_adapter("ollama")
    for pieces in [*every_split(body), *multibyte_splits(body)]:
        mock(respx_mock, "ollama", pieces)
        deltas, outcome, error = await collect(adapter)
        assert error is None
        assert deltas == ["The", " sky 🌌 is\u2028blue\u0085"]  # the thinking line is not text
        assert outcome.finish_reason == "stop"
        assert outcome.usage is not None
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (26, 282)


async def test_ollama_request_url_and_body(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, "ollama", [lines({"done": True})])
    request = chat(system="sys", max_tokens=5, temperature=0.1, top_p=0.2, stop=("Z",))
    await collect(make_adapter("ollama"), request)
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {CANARY_KEY}"
    assert json.loads(sent.content) == {
        "model": "m-1",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        "stream": True,
        "options": {"num_predict": 5, "temperature": 0.1, "top_p": 0.2, "stop": ["Z"]},
    }


async def test_ollama_error_line_after_text(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "ollama", [wire("ollama/stream_error.ndjson")])
    deltas, _, error = await collect(make_adapter("ollama"))
    assert deltas == ["can"]
    assert isinstance(error, UpstreamUnavailable)
    assert error.message == "an error was encountered while running the model"


async def test_ollama_load_only_reply_completes_empty(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "ollama", [b'{"model":"m","done":true,"done_reason":"load"}'])
    deltas, outcome, error = await collect(make_adapter("ollama"))
    assert (deltas, outcome.finish_reason, error) == ([], "load", None)


async def test_ollama_missing_done_is_truncated(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, "ollama", [lines({"message": {"content": "a"}, "done": False})])
    deltas, _, error = await collect(make_adapter("ollama"))
    assert deltas == ["a"]
    assert isinstance(error, UpstreamProtocolError)
