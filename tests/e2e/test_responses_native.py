"""POST /v1/responses on the native path (SPEC §4.9, §4.10): a Responses client on an `openai`
provider with `api = "responses"`, on real sockets. The request arrives as sent (hosted tools,
unknown fields) with only the model and credentials changed; the client's bytes are the
upstream's however the upstream cut them; a failure after the first event is the gateway's
`response.failed`, numbered after the last event; response ids belong to the key that made
them (a foreign or unknown `previous_response_id` is OpenAI's 400 and never reaches the
upstream; GET is forwarded for the owner, 404 for anyone else), in memory or in Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import CANARY_KEY, settings_from, wire
from tests.e2e.servers import Break, Reply, UpstreamStub, serve
from tests.e2e.test_native import events_of
from tests.e2e.test_observability import samples, value
from tests.e2e.test_providers import pieces

pytestmark = pytest.mark.e2e

KEY_A = "sk-gateway-key-of-team-a-0000000001"
KEY_B = "sk-gateway-key-of-team-b-0000000002"
STREAM = wire("openai/responses.sse")
RESPONSE_ID = "resp_0f9c4b2f224d858000695fa062bf048197a680f357bbb09000"
BODY: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "instructions": "be brief",
    "input": [
        {"type": "message", "role": "developer", "content": "env facts"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ],
    "tools": [
        {"type": "web_search"},
        {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False},
        {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
    ],
    "tool_choice": "auto",
    "reasoning": {"effort": "low", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "conversation-1",
    "a_field_from_next_year": {"nested": [1, 2.5, None, True, "é😀"]},
}
WHOLE = {
    "id": "resp_whole",
    "object": "response",
    "status": "completed",
    "model": "up-model-2026",
    "output": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}],
    "usage": {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 2}},
    "a_field_from_next_year": True,
}


def config(upstream: str, api: str = "responses", keys: bool = False, extra: str = "") -> str:
    toml = (
        f"[providers.up]\ntype = 'openai'\nbase_url = '{upstream}/v1'\napi_key = '{CANARY_KEY}'\n"
        f"api = '{api}'\n[models.m]\nprovider = 'up'\nmodel = 'up-model'\n{extra}"
    )
    if keys:
        toml += f"[keys.a]\nsha256 = '{hash_key(KEY_A)}'\n[keys.b]\nsha256 = '{hash_key(KEY_B)}'\n"
    return toml


@asynccontextmanager
async def gateway(
    *replies: Reply, api: str = "responses", keys: bool = False, **overrides: Any
) -> AsyncIterator[tuple[str, UpstreamStub]]:
    stub = UpstreamStub(*replies)
    async with serve(stub) as upstream:
        settings = settings_from(config(upstream, api, keys), **overrides)
        async with serve(create_app(settings)) as url:
            yield url, stub


def client(url: str, key: str = KEY_A) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"})


def sent(stub: UpstreamStub, index: int = 0) -> dict[str, Any]:
    seen = stub.seen[index]
    assert KEY_A not in json.dumps(seen.headers) + seen.body.decode()
    body: dict[str, Any] = json.loads(seen.body)
    return body


# ---- the request goes up as sent, the events come back as they came -----------------------


async def test_the_request_arrives_as_sent_and_the_events_come_back_byte_exact() -> None:
    async with gateway(Reply(body=[STREAM])) as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
        metrics = samples((await http.get("/metrics")).text)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == STREAM
    assert sent(stub) == {**BODY, "model": "up-model"}  # hosted web_search included
    assert stub.seen[0].path == "/v1/responses"
    assert stub.seen[0].headers["authorization"] == f"Bearer {CANARY_KEY}"
    labels = {"model": "m", "provider": "up"}
    assert value(metrics, "gateway_usage_tokens_total", kind="prompt", **labels) == 11
    assert value(metrics, "gateway_usage_tokens_total", kind="completion", **labels) == 18


@pytest.mark.parametrize("size", [1, 3, 7, 64])
async def test_upstream_bytes_cut_anywhere_relay_exactly(size: int) -> None:
    for stream in (STREAM, STREAM.replace(b"\n", b"\r\n")):
        async with gateway(Reply(body=pieces(stream, size))) as (url, _), client(url) as http:
            response = await http.post("/v1/responses", json=BODY)
        assert response.content == stream


async def test_entry_params_go_under_the_clients_fields_in_responses_words() -> None:
    extra = "params = { temperature = 0.2, max_tokens = 9, system = 'sys', stop = 'END' }\n"
    stub = UpstreamStub(Reply(body=[STREAM]))
    async with serve(stub) as upstream:
        app = create_app(settings_from(config(upstream, extra=extra)))
        async with serve(app) as url, client(url) as http:
            await http.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
            await http.post("/v1/responses", json={**BODY, "temperature": 1.0})
    first, second = sent(stub, 0), sent(stub, 1)
    assert (first["temperature"], first["max_output_tokens"]) == (0.2, 9)
    assert first["instructions"] == "sys" and "stop" not in first and "system" not in first
    assert (second["temperature"], second["instructions"]) == (1.0, "be brief")  # the client's


async def test_without_streaming_the_body_comes_back_unchanged_and_is_accounted() -> None:
    raw = json.dumps(WHOLE, indent=1).encode()
    reply = Reply(content_type="application/json", body=[raw])
    async with gateway(reply) as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", json={**BODY, "stream": False})
        metrics = samples((await http.get("/metrics")).text)
        again = await http.post(
            "/v1/responses", json={**BODY, "stream": False, "previous_response_id": "resp_whole"}
        )
    assert response.status_code == 200 and response.content == raw
    assert sent(stub)["stream"] is False
    labels = {"model": "m", "provider": "up"}
    assert value(metrics, "gateway_usage_tokens_total", kind="prompt", **labels) == 7
    assert again.status_code == 200  # the whole body's id was recorded for its owner
    assert sent(stub, 1)["previous_response_id"] == "resp_whole"


# ---- failures ------------------------------------------------------------------------------


def failed_event(tail: bytes) -> dict[str, Any]:
    (kind, data), *more = events_of(tail.decode())
    assert (kind, more) == ("response.failed", [])
    event: dict[str, Any] = json.loads(data)
    assert event["type"] == "response.failed"
    assert event["response"]["status"] == "failed"
    return event


async def test_a_cut_connection_is_response_failed_numbered_after_the_last_event() -> None:
    cut = STREAM.index(b"event: response.output_text.delta", 2000)
    head = STREAM[:cut]
    async with gateway(Reply(body=[head, Break()])) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    assert response.content.startswith(head)
    last = json.loads(events_of(head.decode())[-1][1])["sequence_number"]
    event = failed_event(response.content[len(head) :])
    assert event["sequence_number"] == last + 1
    assert event["response"]["id"] == RESPONSE_ID
    assert event["response"]["error"]["code"] == "upstream_unavailable"
    assert b"response.completed" not in response.content


@pytest.mark.parametrize(
    ("fixture", "marker", "code"),
    [
        ("openai/responses_failure.sse", b"event: response.failed", "upstream_unavailable"),
        ("openai/responses_error.sse", b"event: error", "upstream_unavailable"),
    ],
)
async def test_an_upstream_failure_event_is_replaced_by_the_gateways_own(
    fixture: str, marker: bytes, code: str
) -> None:
    recorded = wire(fixture)
    head = recorded[: recorded.index(marker)]
    async with gateway(Reply(body=[recorded])) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    assert response.content.startswith(head)
    event = failed_event(response.content[len(head) :])
    assert event["sequence_number"] == 4  # in the upstream's numbering, in its event's place
    assert event["response"]["id"] == "resp_123"
    assert event["response"]["error"]["code"] == code
    assert "went wrong" in str(event) or "failed to generate" in str(event)


async def test_a_stream_that_ends_without_a_terminal_event_is_failed() -> None:
    head = STREAM[: STREAM.index(b"event: response.completed")]
    async with gateway(Reply(body=[head])) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    event = failed_event(response.content[len(head) :])
    assert event["sequence_number"] == 24
    assert event["response"]["error"]["code"] == "upstream_protocol"


@pytest.mark.parametrize(
    ("status", "expected", "kind"),
    [(429, 429, "upstream_rate_limited"), (400, 400, "upstream_rejected")],
)
async def test_an_upstream_error_before_the_first_event_is_openais_envelope(
    status: int, expected: int, kind: str
) -> None:
    body = b'{"error":{"message":"nope","type":"invalid_request_error","code":null}}'
    reply = Reply(status=status, content_type="application/json", body=[body])
    async with gateway(reply) as (url, _), client(url) as http:
        response = await http.post("/v1/responses", json=BODY)
    assert response.status_code == expected
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (kind, kind, None)
    assert "nope" in error["message"]


# ---- ownership -----------------------------------------------------------------------------


def not_found(response: httpx.Response, response_id: str) -> None:
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": f"Previous response with id '{response_id}' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }


async def test_previous_response_id_works_for_its_owner_only() -> None:
    stored = json.dumps(WHOLE).encode()
    replies = (Reply(body=[STREAM]), Reply(body=[STREAM]), Reply(200, "application/json", [stored]))
    async with gateway(*replies, keys=True) as (url, stub):
        async with client(url, KEY_A) as a, client(url, KEY_B) as b:
            await a.post("/v1/responses", json=BODY)
            follow_up = {**BODY, "previous_response_id": RESPONSE_ID}
            foreign = await b.post("/v1/responses", json=follow_up)
            unknown = await a.post("/v1/responses", json={**follow_up, "previous_response_id": "x"})
            assert len(stub.seen) == 1  # neither reached the upstream
            own = await a.post("/v1/responses", json=follow_up)
            mine = await a.get(f"/v1/responses/{RESPONSE_ID}")
            theirs = await b.get(f"/v1/responses/{RESPONSE_ID}")
            nobodys = await a.get("/v1/responses/resp_unknown")
    not_found(foreign, RESPONSE_ID)
    not_found(unknown, "x")
    assert own.status_code == 200
    assert sent(stub, 1)["previous_response_id"] == RESPONSE_ID
    assert mine.status_code == 200 and mine.content == stored
    assert stub.seen[2].path == f"/v1/responses/{RESPONSE_ID}"
    assert stub.seen[2].headers["authorization"] == f"Bearer {CANARY_KEY}"
    for response in (theirs, nobodys):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
    assert len(stub.seen) == 3


async def test_an_unstored_response_cannot_be_continued() -> None:
    async with gateway(Reply(body=[STREAM])) as (url, stub), client(url) as http:
        await http.post("/v1/responses", json={**BODY, "store": False})
        response = await http.post(
            "/v1/responses", json={**BODY, "previous_response_id": RESPONSE_ID}
        )
    not_found(response, RESPONSE_ID)
    assert len(stub.seen) == 1


async def test_an_expired_response_cannot_be_continued() -> None:
    async with gateway(Reply(body=[STREAM]), responses_retention_s=0) as (url, stub):
        async with client(url) as http:
            await http.post("/v1/responses", json=BODY)
            follow_up = {**BODY, "previous_response_id": RESPONSE_ID}
            response = await http.post("/v1/responses", json=follow_up)
    not_found(response, RESPONSE_ID)
    assert len(stub.seen) == 1


async def test_with_redis_another_replica_continues_a_response(redis_url: str) -> None:
    stub = UpstreamStub(Reply(body=[STREAM]))
    async with serve(stub) as upstream:
        settings = settings_from(config(upstream, keys=True), redis_url=redis_url)
        first, second = create_app(settings), create_app(settings)
        async with serve(first) as one, serve(second) as two:
            async with client(one) as a_on_one:
                await a_on_one.post("/v1/responses", json=BODY)
            await first.state.response_ids.settled()
            follow_up = {**BODY, "previous_response_id": RESPONSE_ID}
            async with client(two, KEY_B) as b_on_two:
                foreign = await b_on_two.post("/v1/responses", json=follow_up)
            async with client(two) as a_on_two:
                own = await a_on_two.post("/v1/responses", json=follow_up)
    not_found(foreign, RESPONSE_ID)
    assert own.status_code == 200 and len(stub.seen) == 2


# ---- what is not served natively ---------------------------------------------------------------


async def test_a_model_on_a_chat_provider_is_translated() -> None:
    chat = wire("openai/basic.sse")
    async with gateway(Reply(body=[chat]), api="chat") as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", json={**BODY, "tools": BODY["tools"][1:]})
    assert response.status_code == 200
    assert b"event: response.completed" in response.content
    assert stub.seen[0].path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[]", 422),
        (b"{", 422),
        (b'{"input": "hi"}', 422),
        (b'{"model": "m", "stream": "yes"}', 422),
        (b'{"model": "m", "store": 1}', 422),
        (b'{"model": "m", "previous_response_id": ""}', 422),
        (b'{"model": "m", "previous_response_id": "../../models"}', 422),
        (b'{"model": "nope"}', 404),
    ],
)
async def test_hostile_bodies_are_4xx_in_openais_envelope(body: bytes, status: int) -> None:
    async with gateway(Reply(body=[STREAM])) as (url, stub), client(url) as http:
        response = await http.post("/v1/responses", content=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert not stub.seen
