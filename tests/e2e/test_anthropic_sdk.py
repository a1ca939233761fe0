"""The official Anthropic SDK as the client of /v1/messages, against a live gateway on a
socket, in front of the fake provider and of each upstream dialect; httpx-sse as an
independent reader of the event sequence (SPEC §4.7)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from gateway.app import create_app
from gateway.providers.fake import load_story, split_chunks
from tests.conftest import CANARY_KEY, FAST_FAKE, settings_from, wire
from tests.e2e.conftest import GatedProvider, wait_for
from tests.e2e.servers import Reply, UpstreamStub, serve
from tests.e2e.test_observability import samples, value
from tests.e2e.test_providers import CAPTURES, gateway_settings

pytestmark = pytest.mark.e2e

STORY = load_story(None)
CLIENT_KEY = "sk-ant-client-credential-never-forwarded"
FAULTS = (
    FAST_FAKE
    + "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=3}\n"
    + "[models.busy]\nprovider='fake'\nparams={fail_status=529}\n"
    + "[models.gated]\nprovider='gated'\n[providers.gated]\ntype='fake'\n"
)
MESSAGES: Any = [{"role": "user", "content": "hi"}]


def sdk_client(url: str) -> anthropic.AsyncAnthropic:
    """The official SDK pointed at a gateway (no gateway keys configured, no retries)."""
    return anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
async def sdk() -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with serve(create_app(settings_from(FAULTS))) as url:
        async with sdk_client(url) as client:
            yield client


@asynccontextmanager
async def sdk_against(kind: str) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, UpstreamStub]]:
    """The SDK, a live gateway, and behind it a stub speaking `kind`'s recorded stream."""
    capture, content_type, _ = CAPTURES[kind]
    stub = UpstreamStub(Reply(content_type=content_type, body=[wire(capture)]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings(kind, upstream)))
        async with serve(app) as url, sdk_client(url) as client:
            yield client, stub


async def test_sdk_stream_text_and_final_message(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(
        model="story", max_tokens=1024, system="be nice", messages=MESSAGES
    ) as stream:
        text = "".join([delta async for delta in stream.text_stream])
        final = await stream.get_final_message()
    assert text == STORY
    assert final.content[0].type == "text" and final.content[0].text == STORY
    assert len(final.content) == 1
    assert final.stop_reason == "end_turn"
    assert final.model == "story"
    # The fake reports usage only at its end: message_delta carries both counts.
    assert final.usage.input_tokens == 1
    assert final.usage.output_tokens == len(STORY.split())
    assert stream.request_id is not None and len(stream.request_id) == 32


async def test_sdk_create_without_streaming(sdk: anthropic.AsyncAnthropic) -> None:
    response = await sdk.messages.with_raw_response.create(
        model="story", max_tokens=1024, messages=MESSAGES
    )
    message = await response.parse()
    assert message._request_id == response.headers["x-request-id"]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == STORY
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert message.id.startswith("msg_")


async def test_sdk_create_with_streaming_yields_the_event_sequence(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    stream = await sdk.messages.create(
        model="story", max_tokens=1024, messages=MESSAGES, stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


async def test_sdk_unknown_model_is_not_found(sdk: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await sdk.messages.create(model="nope", max_tokens=5, messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]
    with pytest.raises(anthropic.NotFoundError):
        async with sdk.messages.stream(model="nope", max_tokens=5, messages=MESSAGES) as stream:
            await stream.get_final_message()


async def test_sdk_mid_stream_failure_raises(sdk: anthropic.AsyncAnthropic) -> None:
    received = []
    with pytest.raises(anthropic.APIStatusError, match="scripted failure") as caught:
        async with sdk.messages.stream(model="flaky", max_tokens=5, messages=MESSAGES) as stream:
            async for delta in stream.text_stream:
                received.append(delta)
    assert "".join(received) == "".join(split_chunks(STORY, "word")[:3])
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_sdk_mid_stream_failure_without_streaming_is_an_error(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        await sdk.messages.create(model="flaky", max_tokens=5, messages=MESSAGES)
    assert caught.value.status_code == 500


@pytest.mark.parametrize("stream", [True, False])
async def test_sdk_overloaded_upstream_is_the_sdks_overloaded_error(
    sdk: anthropic.AsyncAnthropic, stream: bool
) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        if stream:
            async with sdk.messages.stream(model="busy", max_tokens=5, messages=MESSAGES) as s:
                await s.get_final_message()
        else:
            await sdk.messages.create(model="busy", max_tokens=5, messages=MESSAGES)
    assert caught.value.status_code == 529
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


# An Anthropic upstream without streaming takes the native path, whose upstream answers JSON
# (tests/e2e/test_native.py); these stubs replay recorded streams.
@pytest.mark.parametrize(
    ("kind", "stream"),
    [(kind, s) for kind in CAPTURES for s in (True, False) if s or kind != "anthropic"],
)
async def test_sdk_against_each_upstream_dialect(kind: str, stream: bool) -> None:
    expected = CAPTURES[kind][2]
    async with sdk_against(kind) as (client, stub):
        if stream:
            async with client.messages.stream(
                model="m", max_tokens=50, messages=MESSAGES
            ) as events:
                text = "".join([delta async for delta in events.text_stream])
                message = await events.get_final_message()
            assert text == expected
        else:
            message = await client.messages.create(model="m", max_tokens=50, messages=MESSAGES)
    # The text blocks are the answer; the recorded Gemini and Ollama streams also think, and
    # their thoughts are thinking blocks where they came (SPEC §4.9).
    assert {block.type for block in message.content} <= {"text", "thinking"}
    texts = [block.text for block in message.content if block.type == "text"]
    assert "".join(texts) == expected
    thinking = [block.thinking for block in message.content if block.type == "thinking"]
    assert thinking == {"gemini": ["Let me think"], "ollama": ["hmm"]}.get(kind, [])
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    seen = stub.seen[0]
    assert CLIENT_KEY not in json.dumps(seen.headers) + seen.body.decode()


async def test_anthropic_headers_and_fields_reach_anthropic_upstreams_only() -> None:
    for kind in ("anthropic", "openai"):
        async with sdk_against(kind) as (client, stub):
            async with client.beta.messages.stream(  # ?beta=true, with an anthropic-beta header
                model="m",
                max_tokens=50,
                messages=MESSAGES,
                betas=["test-beta-2025-01-01"],
                metadata={"user_id": "u-42"},
                extra_body={"top_k": 7},
            ) as events:
                await events.get_final_message()
        seen, sent = stub.seen[0], json.loads(stub.seen[0].body)
        assert CLIENT_KEY not in json.dumps(seen.headers) + seen.body.decode()
        assert "x-api-key" not in seen.headers or seen.headers["x-api-key"] == CANARY_KEY
        if kind == "anthropic":
            assert seen.headers["anthropic-beta"] == "test-beta-2025-01-01"
            # The client's API version, not the adapter's default (2023-06-01).
            version = client.default_headers["anthropic-version"]
            assert seen.headers["anthropic-version"] == version != "2023-06-01"
            assert seen.headers["x-api-key"] == CANARY_KEY
            assert (sent["top_k"], sent["metadata"]) == (7, {"user_id": "u-42"})
        else:
            assert not any(name.startswith("anthropic-") for name in seen.headers)
            assert "top_k" not in sent and "metadata" not in sent
            assert seen.headers["authorization"] == f"Bearer {CANARY_KEY}"


async def test_anthropic_upstream_overload_mid_stream_stays_overloaded_error() -> None:
    # The recorded failure has no content_block_start, which the native path would relay
    # and the SDK would trip on: one is added before its delta.
    start = b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    start += b'"content_block":{"type":"text","text":""}}\n\n'
    recorded = wire("anthropic/stream_error.sse")
    cut = recorded.index(b"event: content_block_delta")
    stub = UpstreamStub(Reply(body=[recorded[:cut] + start + recorded[cut:]]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings("anthropic", upstream)))
        async with serve(app) as url, sdk_client(url) as client:
            with pytest.raises(anthropic.APIStatusError) as caught:
                async with client.messages.stream(
                    model="m", max_tokens=5, messages=MESSAGES
                ) as stream:
                    async for _ in stream.text_stream:
                        pass
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def frame(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def expected_stream(stream_id: str, deltas: list[str], usage: dict[str, int]) -> str:
    """The exact bytes of §4.7's sequence, written out independently of the gateway's code."""
    message = {
        "id": f"msg_{stream_id}",
        "type": "message",
        "role": "assistant",
        "model": "gated",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    text = [frame({"type": "message_start", "message": message})]
    text.append(
        frame(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
    )
    for delta in deltas:
        text.append(
            frame(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": delta},
                }
            )
        )
    text.append(frame({"type": "content_block_stop", "index": 0}))
    text.append(
        frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage,
            }
        )
    )
    text.append(frame({"type": "message_stop"}))
    return "".join(text)


def check_types(events: list[ServerSentEvent]) -> list[str]:
    for event in events:
        assert json.loads(event.data)["type"] == event.event
    return [event.event for event in events]


async def test_event_sequence_byte_exact_through_httpx_sse() -> None:
    chunks = ("Hé", 'l"lo\n', " 😀")
    provider = GatedProvider(chunks)
    provider.open_all()
    app = create_app(settings_from(FAULTS), {"gated": provider})
    body = {"model": "gated", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        raw = await http.post("/v1/messages", json=body)
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            events = [event async for event in source.aiter_sse()]
    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["cache-control"] == "no-cache"
    assert raw.headers["x-gateway-model"] == "gated"
    expected = expected_stream(raw.headers["x-stream-id"], list(chunks), {"output_tokens": 3})
    assert raw.text == expected
    assert check_types(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    texts = [json.loads(e.data)["delta"]["text"] for e in events if e.event.endswith("k_delta")]
    assert texts == list(chunks)


async def test_anthropic_upstream_relayed_as_the_upstreams_own_events() -> None:
    # The native path: every event as the upstream sent it (its ping and thinking included).
    stub = UpstreamStub(Reply(body=[wire("anthropic/basic.sse")]))
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with serve(stub) as upstream:
        app = create_app(settings_from(gateway_settings("anthropic", upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/v1/messages", json=body)
    assert response.content == wire("anthropic/basic.sse")


async def test_failure_after_the_first_event_is_an_error_event_and_no_message_stop() -> None:
    app = create_app(settings_from(FAULTS))
    body = {"model": "flaky", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            events = [event async for event in source.aiter_sse()]
            request_id = source.response.headers["x-request-id"]
    kinds = check_types(events)
    assert kinds[-1] == "error" and "message_stop" not in kinds
    assert kinds.count("content_block_delta") == 3
    assert json.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": "api_error", "message": "scripted failure: the stream broke"},
        "request_id": request_id,
    }


async def test_ping_on_idle_and_never_after_message_stop() -> None:
    provider = GatedProvider(("one ", "two "))
    app = create_app(settings_from(FAULTS, sse_keepalive_s=0.01), {"gated": provider})
    body = {"model": "gated", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    provider.gates[0].set()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            events = source.aiter_sse()
            seen = [await anext(events) for _ in range(3)]
            assert [e.event for e in seen][-1] == "content_block_delta"
            # The upstream is held: the stream would be silent, so a ping must come.
            seen.append(await anext(events))
            assert seen[-1].event == "ping"
            assert seen[-1].data == '{"type":"ping"}'
            provider.open_all()
            seen += [event async for event in events]
    kinds = check_types(seen)
    assert kinds[-1] == "message_stop"
    assert [kind for kind in kinds if kind != "ping"] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_client_leaving_a_messages_stream_cancels_the_upstream() -> None:
    provider = GatedProvider(("one ", "two "))
    provider.gates[0].set()
    app = create_app(settings_from(FAULTS), {"gated": provider})
    body = {"model": "gated", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            events = source.aiter_sse()
            assert [(await anext(events)).event for _ in range(3)][-1] == "content_block_delta"
        await wait_for(provider.closed)
        assert app.state.gateway.drain.active == set()


async def test_messages_requests_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    app = create_app(settings_from(FAULTS))
    async with serve(app) as url, sdk_client(url) as client:
        await client.messages.create(model="story", max_tokens=5, messages=MESSAGES)
        async with client.messages.stream(model="story", max_tokens=5, messages=MESSAGES) as s:
            await s.get_final_message()
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model="busy", max_tokens=5, messages=MESSAGES)
        async with httpx.AsyncClient(base_url=url) as http:
            metrics = (await http.get("/metrics")).text
    found = samples(metrics)
    labels = {"route": "/v1/messages", "model": "story", "provider": "fake"}
    assert value(found, "gateway_requests_total", outcome="complete", type="", **labels) == 2
    lines = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "request" and r.fields["route"] == "/v1/messages"  # type: ignore[attr-defined]
    ]
    assert [(line["status"], line["outcome"]) for line in lines] == [
        (200, "complete"),
        (200, "complete"),
        (529, "upstream_error"),
    ]
    assert lines[2]["error_type"] == "upstream_unavailable"
    assert all(line["deltas"] > 0 for line in lines[:2])
    assert CLIENT_KEY not in caplog.text


async def test_shutdown_ends_a_messages_stream_with_overloaded_error() -> None:
    provider = GatedProvider(("one ", "two "))
    provider.gates[0].set()
    app = create_app(settings_from(FAULTS, sse_keepalive_s=0.01), {"gated": provider})
    body = {"model": "gated", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with aconnect_sse(http, "POST", "/v1/messages", json=body) as source:
            events = source.aiter_sse()
            seen = [await anext(events) for _ in range(4)]
            assert seen[-1].event == "ping"  # idle, waiting on the held upstream
            app.state.drain.begin(0)  # the grace runs out at once
            seen += [event async for event in events]
        refused = await http.post("/v1/messages", json=body)
    kinds = check_types(seen)
    assert kinds[-1] == "error" and "message_stop" not in kinds
    assert json.loads(seen[-1].data)["error"]["type"] == "overloaded_error"
    assert refused.status_code == 529
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert refused.headers["retry-after"] == "1"
    await wait_for(provider.closed)
