"""The native path (SPEC §4.9) on real sockets: an OpenAI client on an `openai` provider and an
Anthropic client on an `anthropic` one. The official SDKs and raw httpx as clients, a stub
upstream on a socket of its own: the request arrives as sent (unknown fields included) with
only the model, streaming options and credentials changed; the client's bytes are the
upstream's, however the upstream cut them; failures after the first event are the in-band
error; bad bodies are a 4xx in the dialect's envelope."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import CANARY_KEY, settings_from, wire
from tests.e2e.servers import Break, Reply, UpstreamStub, serve
from tests.e2e.test_observability import samples, value
from tests.e2e.test_providers import gateway_settings, pieces

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-credential-never-forwarded-0001"
ROUTES = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MESSAGES: Any = [{"role": "user", "content": "hi"}]
TOOL = {
    "name": "get_weather",
    "description": "The weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
OPENAI_STREAM = wire("openai/basic.sse")
USAGE_CHUNK = (
    OPENAI_STREAM[
        OPENAI_STREAM.index(
            b'data: {"id":"chatcmpl-Bwoi","object":"chat.completion.chunk","created":1753357673,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_x","choices":[],'
        ) :
    ].split(b"\n\n")[0]
    + b"\n\n"
)
ANTHROPIC_STREAM = wire("anthropic/basic.sse")

# Fields no text relay carries, and fields that do not exist (yet): all go up as sent.
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "m",
    "max_tokens": 64,
    "stream": True,
    "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]},
        {"role": "system", "content": "environment facts"},
    ],
    "tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "metadata": {"user_id": '{"session":"s-1"}'},
    "a_field_from_next_year": {"nested": [1, 2.5, None, True, "é😀"]},
}
OPENAI_BODY: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
    "tools": [OPENAI_TOOL],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "n": 2,
    "logprobs": True,
    "response_format": {"type": "json_object"},
    "a_field_from_next_year": {"nested": [1, 2.5, None, True, "é😀"]},
}


@asynccontextmanager
async def native(
    kind: str, *replies: Reply, config: str | None = None, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, UpstreamStub, str]]:
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        settings = config.format(upstream=upstream) if config else gateway_settings(kind, upstream)
        async with serve(create_app(settings_from(settings, **overrides))) as url:
            headers = {"x-api-key": CLIENT_KEY, "authorization": f"Bearer {CLIENT_KEY}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as http:
                yield http, stub, url


def sent_to(stub: UpstreamStub, index: int = 0) -> dict[str, Any]:
    seen = stub.seen[index]
    assert CLIENT_KEY not in json.dumps(seen.headers) + seen.body.decode()
    body: dict[str, Any] = json.loads(seen.body)
    return body


# ---- the request goes up as sent ----------------------------------------------------------


async def test_anthropic_request_arrives_as_sent_and_events_come_back_byte_exact() -> None:
    async with native("anthropic", Reply(body=[ANTHROPIC_STREAM])) as (http, stub, _):
        headers = {"anthropic-beta": "future-beta-2027-01-01", "anthropic-version": "2099-01-01"}
        response = await http.post("/v1/messages?beta=true", json=ANTHROPIC_BODY, headers=headers)
    assert response.status_code == 200
    assert response.content == ANTHROPIC_STREAM
    assert response.headers["x-gateway-provider"] == "up"
    assert sent_to(stub) == {**ANTHROPIC_BODY, "model": "up-model"}
    seen = stub.seen[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["anthropic-beta"] == "future-beta-2027-01-01"
    assert seen.headers["anthropic-version"] == "2099-01-01"
    assert seen.headers["x-api-key"] == CANARY_KEY
    assert "authorization" not in seen.headers


@pytest.mark.parametrize("include_usage", [True, False])
async def test_openai_request_arrives_as_sent_and_chunks_come_back_byte_exact(
    include_usage: bool,
) -> None:
    body = dict(OPENAI_BODY)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with native("openai", Reply(body=[OPENAI_STREAM])) as (http, stub, _):
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    # The usage chunk the gateway asked for on its own behalf is dropped, and only that.
    expected = OPENAI_STREAM if include_usage else OPENAI_STREAM.replace(USAGE_CHUNK, b"")
    assert USAGE_CHUNK in OPENAI_STREAM
    assert response.content == expected
    sent = sent_to(stub)
    assert sent == {**body, "model": "up-model", "stream_options": {"include_usage": True}}
    assert stub.seen[0].headers["authorization"] == f"Bearer {CANARY_KEY}"


async def test_entry_params_go_under_the_clients_fields() -> None:
    config = (
        "[providers.up]\ntype = 'anthropic'\nbase_url = '{upstream}'\n"
        f"api_key = '{CANARY_KEY}'\n"
        "[models.m]\nprovider = 'up'\nmodel = 'up-model'\n"
        "params = {{ temperature = 0.2, top_k = 5, stop = 'END', max_tokens = 9 }}\n"
    )
    async with native("anthropic", Reply(body=[ANTHROPIC_STREAM]), config=config) as (
        http,
        stub,
        _,
    ):
        await http.post("/v1/messages", json={**ANTHROPIC_BODY, "top_k": 40})
    sent = sent_to(stub)
    assert (sent["top_k"], sent["max_tokens"]) == (40, 64)  # the client's win
    assert (sent["temperature"], sent["stop_sequences"]) == (0.2, ["END"])  # the entry's added


# ---- the official SDKs ---------------------------------------------------------------------


def sse_payloads(body: bytes) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in body.decode().split("\n")
        if line.startswith("data: ") and line[6:] != "[DONE]"
    ]


async def test_openai_sdk_chunks_equal_the_upstreams() -> None:
    async with native("openai", Reply(body=[OPENAI_STREAM])) as (_, stub, url):
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                tools=[OPENAI_TOOL],  # type: ignore[list-item]
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"a_field_from_next_year": [1]},
            )
            chunks = [chunk.model_dump(exclude_unset=True) async for chunk in stream]
    assert chunks == sse_payloads(OPENAI_STREAM)
    sent = sent_to(stub)
    assert sent["a_field_from_next_year"] == [1] and sent["tools"] == [OPENAI_TOOL]


async def test_anthropic_sdk_events_equal_the_upstreams() -> None:
    async with native("anthropic", Reply(body=[ANTHROPIC_STREAM])) as (_, stub, url):
        client = anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        async with client:
            stream = await client.beta.messages.create(
                model="m",
                max_tokens=64,
                messages=MESSAGES,
                tools=[TOOL],  # type: ignore[list-item]
                betas=["future-beta-2027-01-01"],
                stream=True,
                extra_body={"a_field_from_next_year": [1]},
            )
            events = [event.to_dict() async for event in stream]
    upstream_events = sse_payloads(ANTHROPIC_STREAM)
    assert {"type": "ping"} in upstream_events  # relayed, but the SDK does not surface pings
    assert events == [event for event in upstream_events if event["type"] != "ping"]
    sent = sent_to(stub)
    assert sent["a_field_from_next_year"] == [1] and sent["tools"] == [TOOL]
    assert stub.seen[0].headers["anthropic-beta"] == "future-beta-2027-01-01"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_sdk_without_streaming_gets_the_upstreams_body(kind: str) -> None:
    whole = {
        "openai": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": []},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            "a_field_from_next_year": True,
        },
        "anthropic": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 7, "output_tokens": 3},
            "a_field_from_next_year": True,
        },
    }[kind]
    raw = json.dumps(whole, indent=1).encode()  # the upstream's own formatting is kept too
    reply = Reply(content_type="application/json", body=[raw])
    async with native(kind, reply) as (http, stub, _url):
        body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "tools": [TOOL]}
        if kind == "openai":
            body = {"model": "m", "messages": MESSAGES, "tools": [OPENAI_TOOL]}
        response = await http.post(ROUTES[kind], json=body)
        metrics = samples((await http.get("/metrics")).text)
    assert response.status_code == 200
    assert response.content == raw
    assert "stream" not in sent_to(stub) and "stream_options" not in sent_to(stub)
    labels = {"model": "m", "provider": "up"}
    assert value(metrics, "gateway_usage_tokens_total", kind="prompt", **labels) == 7
    assert value(metrics, "gateway_usage_tokens_total", kind="completion", **labels) == 3


async def test_stream_usage_is_accounted() -> None:
    async with native("anthropic", Reply(body=[ANTHROPIC_STREAM])) as (http, _, _url):
        await http.post("/v1/messages", json=ANTHROPIC_BODY)
        metrics = samples((await http.get("/metrics")).text)
    labels = {"model": "m", "provider": "up"}
    assert value(metrics, "gateway_usage_tokens_total", kind="prompt", **labels) == 11
    assert value(metrics, "gateway_usage_tokens_total", kind="completion", **labels) == 6


# ---- cut anywhere, fail anywhere -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic", "anthropic-crlf"])
@pytest.mark.parametrize("size", [1, 3, 7, 64])
async def test_upstream_bytes_cut_anywhere_relay_exactly(kind: str, size: int) -> None:
    stream = {
        "openai": OPENAI_STREAM,
        "anthropic": ANTHROPIC_STREAM,
        "anthropic-crlf": ANTHROPIC_STREAM.replace(b"\n", b"\r\n"),  # CRLF line ends
    }[kind]
    body = {"openai": {**OPENAI_BODY, "stream_options": {"include_usage": True}}}.get(
        kind, ANTHROPIC_BODY
    )
    kind = kind.removesuffix("-crlf")
    async with native(kind, Reply(body=pieces(stream, size))) as (http, _, _url):
        response = await http.post(ROUTES[kind], json=body)
    assert response.content == stream


def events_of(text: str) -> list[tuple[str, Any]]:
    found = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in lines:
            found.append((lines.get("event", ""), lines["data"]))
    return found


async def test_anthropic_error_event_mid_stream_is_the_in_band_error() -> None:
    recorded = wire("anthropic/stream_error.sse")
    before = recorded[: recorded.index(b"event: error")]
    async with native("anthropic", Reply(body=[recorded])) as (http, _, _url):
        response = await http.post("/v1/messages", json=ANTHROPIC_BODY)
    assert response.content.startswith(before)  # the events before it, as they came
    (kind, data), *_ = events_of(response.content[len(before) :].decode())
    assert kind == "error"
    error = json.loads(data)
    assert error["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert b"message_stop" not in response.content


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_cut_connection_is_the_in_band_error_never_an_end(kind: str) -> None:
    stream = {"openai": OPENAI_STREAM, "anthropic": ANTHROPIC_STREAM}[kind]
    half = stream[: len(stream) // 2]
    body = OPENAI_BODY if kind == "openai" else ANTHROPIC_BODY
    async with native(kind, Reply(body=[half, Break()])) as (http, _, _url):
        response = await http.post(ROUTES[kind], json=body)
    cut = half.rindex(b"\n\n") + 2  # the complete events before the break, as they came
    assert response.content.startswith(half[:cut])
    tail = events_of(response.content[cut:].decode())
    assert len(tail) == 1
    event, data = tail[0]
    if kind == "anthropic":
        assert event == "error" and json.loads(data)["type"] == "error"
    else:
        assert "error" in json.loads(data)
    assert b"message_stop" not in response.content and b"[DONE]" not in response.content


async def test_a_client_that_leaves_cancels_the_upstream() -> None:
    from tests.e2e.servers import Gate

    gate = Gate()
    first = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_start")]
    async with native("anthropic", Reply(body=[first, gate])) as (http, stub, _url):
        async with http.stream("POST", "/v1/messages", json=ANTHROPIC_BODY) as response:
            async for chunk in response.aiter_bytes():
                assert chunk == first
                break
        await stub.hung_up.wait()


# ---- fallbacks -----------------------------------------------------------------------------

FALLBACKS = (
    "[providers.a]\ntype = 'anthropic'\nbase_url = '{upstream}'\n"
    f"api_key = '{CANARY_KEY}'\n"
    "[providers.o]\ntype = 'openai'\nbase_url = '{upstream}/v1'\n"
    f"api_key = '{CANARY_KEY}'\n"
    "[models.m]\nprovider = 'a'\nmodel = 'first'\nfallbacks = ['{fallback}']\n"
    "[models.other-anthropic]\nprovider = 'a'\nmodel = 'second'\n"
    "[models.other-openai]\nprovider = 'o'\nmodel = 'third'\n"
)
OVERLOADED = Reply(
    status=529,
    content_type="application/json",
    body=[b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'],
)


async def test_fallback_to_another_anthropic_entry_stays_native() -> None:
    config = FALLBACKS.replace("{fallback}", "other-anthropic")
    replies = (OVERLOADED, Reply(body=[ANTHROPIC_STREAM]))
    async with native("anthropic", *replies, config=config) as (http, stub, _):
        response = await http.post("/v1/messages", json=ANTHROPIC_BODY)
    assert response.content == ANTHROPIC_STREAM
    assert response.headers["x-gateway-model"] == "other-anthropic"
    assert [sent_to(stub, i)["model"] for i in range(2)] == ["first", "second"]
    assert sent_to(stub, 1)["tools"] == ANTHROPIC_BODY["tools"]


async def test_a_fallback_of_another_dialect_is_skipped_for_what_it_cannot_carry() -> None:
    config = FALLBACKS.replace("{fallback}", "other-openai")
    async with native("anthropic", OVERLOADED, config=config) as (http, stub, _):
        response = await http.post("/v1/messages", json=ANTHROPIC_BODY)
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert len(stub.seen) == 1  # the OpenAI entry was never asked


async def test_a_fallback_of_another_dialect_carries_tools_translated() -> None:
    config = FALLBACKS.replace("{fallback}", "other-openai")
    replies = (OVERLOADED, Reply(body=[OPENAI_STREAM]))
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True, "tools": [TOOL]}
    async with native("anthropic", *replies, config=config) as (http, stub, _):
        response = await http.post("/v1/messages", json=body)
    assert response.headers["x-gateway-model"] == "other-openai"
    assert events_of(response.text)[-1][0] == "message_stop"
    sent = sent_to(stub, 1)
    assert stub.seen[1].path == "/v1/chat/completions"
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]
    assert sent["tools"][0]["function"]["parameters"] == TOOL["input_schema"]


async def test_a_fallback_of_another_dialect_serves_plain_text_translated() -> None:
    config = FALLBACKS.replace("{fallback}", "other-openai")
    replies = (OVERLOADED, Reply(body=[OPENAI_STREAM]))
    plain = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with native("anthropic", *replies, config=config) as (http, stub, _):
        response = await http.post("/v1/messages", json=plain)
    assert response.headers["x-gateway-model"] == "other-openai"
    assert stub.seen[1].path == "/v1/chat/completions"
    texts = [
        json.loads(data)["delta"]["text"]
        for kind, data in events_of(response.text)
        if kind == "content_block_delta"
    ]
    assert "".join(texts) == "The quick 😀 fox 中文 line\u2028sep nel\u0085!"
    assert events_of(response.text)[-1][0] == "message_stop"


# ---- the translated path ------------------------------------------------------------------


async def test_a_translated_pair_carries_tools_and_names_what_it_cannot() -> None:
    # Claude Code's kind of request on an OpenAI upstream: everything maps except the server
    # tool, which needs Anthropic's servers: a 400 naming it, and nothing goes upstream.
    body = {key: value for key, value in ANTHROPIC_BODY.items() if key != "a_field_from_next_year"}
    async with native("openai", Reply(body=[OPENAI_STREAM])) as (http, stub, _):
        response = await http.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("tools.1: the server tool 'web_search_20250305'")
    assert not stub.seen
    async with native("anthropic", Reply(body=[ANTHROPIC_STREAM])) as (http, stub, _):
        tools = {"model": "m", "messages": MESSAGES, "tools": [OPENAI_TOOL], "stream": True}
        response = await http.post("/v1/chat/completions", json=tools)
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    assert stub.seen[0].path == "/v1/messages"


# ---- hostile bodies ------------------------------------------------------------------------

BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b'"m"',
    b"null",
    b'{"model": "m", "stream": "yes"}',
    b'{"model": "m", "stream": 1}',
    b'{"model": "m", "stream": null}',
    b'{"model": "m\\u0000", "stream": true}',
    b'{"model": "m", "stream": true, "x": 1e999999}',
    b'{"model": "m", "stream": true, "x": 123456789012345678901234567890}',
    b'{"model": "m", "stream": true, "x": "\\ud800"}',
    b'\xff{"model": "m"}',
    b'{"model": ["m"]}',
    b'{"model": {"a": 1}}',
    b'{"model": 7}',
]


def check_envelope(kind: str, response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()
    if kind == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] in ("invalid_request_error", "request_too_large")
    else:
        assert isinstance(error["error"]["message"], str) and error["error"]["type"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_hostile_native_bodies_are_4xx_in_the_dialects_envelope(kind: str) -> None:
    good = json.dumps(OPENAI_BODY if kind == "openai" else ANTHROPIC_BODY).encode()
    rng = random.Random(24)
    mutants = []
    for _ in range(60):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mutants.append(bytes(data))
    bad = [*BAD_BODIES, *mutants]
    if kind == "openai":
        bad.append(b'{"model": "m", "stream": true, "stream_options": "x"}')
    headers = {"content-type": "application/json"}
    reply = Reply(status=400, content_type="application/json", body=[b'{"error":{"message":"no"}}'])
    # A small body limit, so that a small body provokes the 413 (the default is 32 MiB).
    async with native(kind, reply, max_body_bytes=1024 * 1024) as (http, _, _url):
        for body in bad:
            response = await http.post(ROUTES[kind], content=body, headers=headers)
            check_envelope(kind, response)
        huge = b'{"model": "m", "x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        response = await http.post(ROUTES[kind], content=huge, headers=headers)
        assert response.status_code == 413
        check_envelope(kind, response)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_an_upstream_rejection_is_the_dialects_error(kind: str) -> None:
    message = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad tool"}}'
    reply = Reply(status=400, content_type="application/json", body=[message])
    body = OPENAI_BODY if kind == "openai" else ANTHROPIC_BODY
    async with native(kind, reply) as (http, _, _url):
        response = await http.post(ROUTES[kind], json=body)
    assert response.status_code == 400
    check_envelope(kind, response)
    assert response.json()["error"]["message"] == "bad tool"


async def test_shutdown_ends_a_native_stream_with_the_in_band_error() -> None:
    from tests.e2e.servers import Gate

    gate = Gate()
    first = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_start")]
    stub = UpstreamStub(Reply(body=[first, gate]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings("anthropic", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            async with http.stream("POST", "/v1/messages", json=ANTHROPIC_BODY) as response:
                chunks = response.aiter_bytes()
                assert await anext(chunks) == first
                app.state.drain.begin(0)  # the grace runs out at once
                rest = b"".join([chunk async for chunk in chunks])
            await stub.hung_up.wait()
    (kind, data), *more = events_of(rest.decode())
    assert (kind, more) == ("error", [])
    assert json.loads(data)["error"]["type"] == "overloaded_error"


async def test_a_keys_tokens_are_charged_from_the_upstreams_usage() -> None:
    from gateway.auth import hash_key

    # basic.sse reports 11 + 6 = 17 tokens in 9 events: with a budget of 15 a minute, the
    # second request is refused only if the usage (not the event count) was charged.
    stub = UpstreamStub(Reply(body=[ANTHROPIC_STREAM]))
    async with serve(stub) as upstream:
        toml = gateway_settings("anthropic", upstream)
        toml += f"[keys.claude]\nsha256 = '{hash_key(CLIENT_KEY)}'\ntpm = 15\n"
        async with serve(create_app(settings_from(toml))) as url:
            async with httpx.AsyncClient(base_url=url, headers={"x-api-key": CLIENT_KEY}) as http:
                first = await http.post("/v1/messages", json=ANTHROPIC_BODY)
                second = await http.post("/v1/messages", json=ANTHROPIC_BODY)
    assert first.content == ANTHROPIC_STREAM
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "rate_limit_error"
