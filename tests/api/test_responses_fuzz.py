"""Fuzzing POST /v1/responses (SPEC §4.10, §4.2): any bytes, any JSON, and hostile values for
one field at a time over an otherwise valid body get a 4xx in OpenAI's envelope or the
upstream's answer, never a 5xx; nothing the gateway refuses reaches the upstream. The
upstream is a real `openai` adapter (`api = "responses"`) over a mock transport that answers
every request with the recorded stream, or its JSON when not streaming."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.providers._http import UpstreamClient
from gateway.providers.openai import OpenAIConfig, OpenAIProvider
from tests.api.test_fuzz import FUZZ, bodies, json_values
from tests.conftest import app_client, settings_from, wire

STREAM = wire("openai/responses.sse")
WHOLE = orjson.dumps({"id": "resp_whole", "object": "response", "status": "completed"})
TOML = (
    "[providers.up]\ntype = 'openai'\nbase_url = 'http://upstream.invalid/v1'\napi_key = 'k'\n"
    "api = 'responses'\n[models.m]\nprovider = 'up'\n"
)


class Upstream:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if json.loads(request.content).get("stream"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=STREAM
            )
        return httpx.Response(200, headers={"content-type": "application/json"}, content=WHOLE)


@asynccontextmanager
async def openai_gateway(
    toml: str, answer: Callable[[httpx.Request], httpx.Response]
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in process, its `up` provider an OpenAI upstream that `answer` plays."""
    settings = settings_from(toml, max_body_bytes=8192)
    config = settings.providers["up"]
    assert isinstance(config, OpenAIConfig)
    client = UpstreamClient(httpx.MockTransport(answer), httpx.Timeout(5))
    async with app_client(settings, {"up": OpenAIProvider(config, client)}) as (http, _):
        yield http
    await client.aclose()


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[httpx.AsyncClient, Upstream]]:
    upstream = Upstream()
    async with openai_gateway(TOML, upstream) as http:
        yield http, upstream


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
        if error["code"] == "previous_response_not_found":
            assert (response.status_code, error["param"]) == (400, "previous_response_id")
        else:
            assert error["code"] == error["type"]


@FUZZ
@given(body=bodies)
async def test_fuzzed_bodies_get_4xx_in_openais_envelope(
    gateway: tuple[httpx.AsyncClient, Upstream], body: bytes
) -> None:
    http, upstream = gateway
    before = len(upstream.requests)
    response = await http.post("/v1/responses", content=body)
    check(response)
    if response.status_code >= 400:
        assert len(upstream.requests) == before


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["m", "nope", "up/x", "", "m\n"]) | json_values,
    "input": json_values,
    "stream": st.booleans() | json_values,
    "store": st.booleans() | json_values,
    "previous_response_id": st.text(max_size=20) | json_values,
    "instructions": json_values,
    "tools": json_values,
    "tool_choice": json_values,
    "prompt_cache_key": json_values,
    "user": json_values,
    "bogus": json_values,
}
valid = {"model": "m", "input": "hi", "stream": True}
field_bodies = st.lists(
    st.one_of(*(st.tuples(st.just(name), values) for name, values in FIELDS.items())),
    max_size=3,
).map(lambda overrides: {**valid, **dict(overrides)})


@FUZZ
@given(body=field_bodies)
@example(body={**valid, "previous_response_id": "resp_0f9c"})
@example(body={**valid, "prompt_cache_key": 5})
@example(body={**valid, "stream": False, "store": False})
async def test_hostile_fields_get_4xx_or_the_upstreams_answer(
    gateway: tuple[httpx.AsyncClient, Upstream], body: dict[str, Any]
) -> None:
    http, upstream = gateway
    before = len(upstream.requests)
    response = await http.post("/v1/responses", content=json.dumps(body).encode())
    check(response)
    if response.status_code == 200:
        sent = json.loads(upstream.requests[-1].content)
        assert {**sent, "model": body["model"]} == body  # forwarded as sent
        assert response.content == (STREAM if body["stream"] is True else WHOLE)
    else:
        assert len(upstream.requests) == before


@FUZZ
@given(response_id=st.text(min_size=1, max_size=40))
async def test_fuzzed_ids_to_get_are_404(
    gateway: tuple[httpx.AsyncClient, Upstream], response_id: str
) -> None:
    http, upstream = gateway
    response = await http.get("/v1/responses/" + quote(response_id, safe=""))
    if response_id in (".", ".."):  # the client resolves it away: GET /v1/responses is a 405
        assert response.status_code == 405
    else:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "not_found"
    assert not upstream.requests


# ---- the translated path: hostile items, tools and controls over a Chat Completions upstream

CHAT_TOML = (
    "[providers.up]\ntype = 'openai'\nbase_url = 'http://upstream.invalid/v1'\napi_key = 'k'\n"
    "[models.m]\nprovider = 'up'\n"
)
CHAT_STREAM = wire("openai/tools.sse")


@pytest.fixture
async def translated() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=CHAT_STREAM
        )

    async with openai_gateway(CHAT_TOML, answer) as http:
        yield http, seen


parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "x"])},
    optional={
        "text": json_values,
        "image_url": st.sampled_from(["data:image/png;base64,AA", "https://x/y", "ftp://z"])
        | json_values,
        "file_data": json_values,
    },
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "developer", "x"]),
        "content": st.text(max_size=5) | st.lists(parts | json_values, max_size=3),
    },
    optional={"type": st.just("message"), "id": json_values},
)
other_items = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message",
                "function_call",
                "function_call_output",
                "custom_tool_call",
                "custom_tool_call_output",
                "reasoning",
                "item_reference",
                "web_search_call",
            ]
        )
    },
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "developer", "x"]),
        "content": st.text(max_size=5) | st.lists(parts | json_values, max_size=3),
        "call_id": st.text(max_size=5) | json_values,
        "name": st.sampled_from(["f", "apply_patch"]) | json_values,
        "arguments": st.text(max_size=5) | json_values,
        "input": json_values,
        "output": st.text(max_size=5) | st.lists(parts | json_values, max_size=2),
        "summary": json_values,
        "encrypted_content": st.sampled_from(["gw1.anthropic.s:x", "gw1.", "opaque"]),
        "namespace": json_values,
    },
)
items = messages | other_items
tools = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "custom", "namespace", "web_search", "mystery"])},
    optional={"name": json_values, "parameters": json_values, "tools": json_values},
)
TRANSLATED_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "input": st.lists(items, min_size=1, max_size=4),
    "tools": st.lists(tools, max_size=3) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required", "x"])
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "web_search", "x"])}, optional={"name": json_values}
    )
    | json_values,
    "instructions": json_values,
    "reasoning": json_values,
    "text": json_values,
    "max_output_tokens": json_values,
    "temperature": json_values,
    "parallel_tool_calls": json_values,
    "store": json_values,
    "stream": st.booleans() | json_values,
}
translated_bodies = st.tuples(
    st.lists(items, min_size=1, max_size=4),
    st.lists(
        st.one_of(*(st.tuples(st.just(n), v) for n, v in TRANSLATED_FIELDS.items())), max_size=3
    ),
).map(lambda drawn: {**valid, "input": drawn[0], **dict(drawn[1])})


@FUZZ
@given(body=translated_bodies)
@example(body={**valid, "input": [{"type": "reasoning", "encrypted_content": "gw1."}]})
async def test_translated_bodies_get_4xx_or_a_whole_answer(
    translated: tuple[httpx.AsyncClient, list[httpx.Request]], body: dict[str, Any]
) -> None:
    http, seen = translated
    before = len(seen)
    response = await http.post("/v1/responses", content=json.dumps(body).encode())
    check(response)
    if response.status_code >= 400:
        assert len(seen) == before
    elif body.get("stream") is True:
        assert response.content.rstrip().split(b"\n")[0] == b"event: response.created"
    else:
        assert response.json()["object"] == "response"
