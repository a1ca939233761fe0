"""Everything decided before the commit point, in process (statuses, envelopes, headers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from gateway.providers.fake import FakeConfig, load_story
from tests.api.test_ui_api import RecordingProvider
from tests.conftest import FAST_FAKE, app_client, settings_from
from tests.e2e.conftest import CountingFake

STORY = load_story(None)

FAULTS = (
    FAST_FAKE
    + """
[models.rejected]
provider = "fake"
params = { fail_status = 400 }
[models.denied]
provider = "fake"
params = { fail_status = 401 }
[models.limited]
provider = "fake"
params = { fail_status = 429 }
[models.broken]
provider = "fake"
params = { fail_status = 500 }
[models.overloaded]
provider = "fake"
params = { fail_status = 529 }
[models.slow]
provider = "slowfake"
params = { first_chunk_delay_ms = 60000 }
[providers.slowfake]
type = "fake"
first_token_timeout = 0.05
[models.rescued]
provider = "fake"
params = { fail_status = 503 }
fallbacks = ["limited", "story"]
[models.unrescued]
provider = "fake"
params = { fail_status = 503 }
fallbacks = ["limited"]
[models.stubborn]
provider = "fake"
params = { fail_status = 400 }
fallbacks = ["story"]
"""
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings_from(FAULTS, max_body_bytes=20_000)) as (http, _):
        yield http


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


async def test_post_text_stream_is_the_story_with_headers(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream", json={"prompt": "hi"})
    assert response.status_code == 200
    assert response.text == STORY
    headers = response.headers
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-gateway-model"] == "story"
    assert headers["x-gateway-provider"] == "fake"
    assert len(headers["x-request-id"]) == 32
    assert "content-encoding" not in headers


async def test_get_stream_with_query_parameters(client: httpx.AsyncClient) -> None:
    response = await client.get("/stream", params={"prompt": "hi", "model": "story"})
    assert (response.status_code, response.text) == (200, STORY)


async def test_messages_system_and_sampling_reach_the_upstream() -> None:
    recording = RecordingProvider()
    settings = settings_from(
        FAST_FAKE
        + "[providers.recording]\ntype = 'fake'\n[models.recorded]\nprovider = 'recording'\n"
    )
    body = {
        "model": "recorded",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "system": "x",
        "max_tokens": 5,
        "temperature": 0.5,
        "top_p": 1,
        "stop": ["a", "b"],
    }
    async with app_client(settings, {"recording": recording}) as (client, _):
        response = await client.post("/stream", json=body)
    assert (response.status_code, response.text) == (200, "Hello there")
    (sent,) = recording.requests
    assert [(m.role, m.content) for m in sent.messages] == [("user", "u")]
    assert sent.system == "x\n\ns"  # the field first, then the conversation's system messages
    assert (sent.max_tokens, sent.temperature, sent.top_p, sent.stop) == (5, 0.5, 1, ("a", "b"))


async def test_sane_request_id_is_echoed_and_insane_replaced(client: httpx.AsyncClient) -> None:
    ok = await client.post("/stream", json={"prompt": "hi"}, headers={"X-Request-ID": "abc-123"})
    assert ok.headers["x-request-id"] == "abc-123"
    bad = await client.post("/stream", json={"prompt": "hi"}, headers={"X-Request-ID": "a b<"})
    assert bad.headers["x-request-id"] != "a b<"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{bad", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b'"str"', "must be a JSON object"),
        (b'{"prompt": "\xff\xfe"}', "not valid JSON"),
        (b'{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "exactly one"),
        (b"{}", "exactly one"),
        (b'{"prompt": "a", "tools": []}', "tools: Extra inputs are not permitted"),
        (b'{"prompt": 5}', "prompt"),
        (b'{"prompt": "a", "temperature": 9}', "temperature"),
        (b'{"prompt": "a", "max_tokens": 0}', "max_tokens"),
        (b'{"prompt": "a", "max_tokens": 1e400}', "not valid JSON"),
        (b'{"prompt": "a", "model": "with space"}', "model"),
        (b'{"prompt": "a", "model": ""}', "model"),
        (b'{"messages": [{"role": "tool", "content": "x"}]}', "role"),
        (b'{"messages": []}', "messages"),
        (b'{"prompt": "a", "stop": []}', "stop"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
async def test_bad_bodies_get_422_invalid_request(
    client: httpx.AsyncClient, body: bytes, needle: str
) -> None:
    response = await client.post("/stream", content=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "invalid_request"
    assert needle in error["message"]


async def test_get_unknown_or_repeated_query_parameters_get_422(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/stream", params={"prompt": "a", "api_key": "x"})
    assert unknown.status_code == 422
    assert "api_key" in error_of(unknown)["message"]
    repeated = await client.get("/stream?prompt=a&prompt=b")
    assert repeated.status_code == 422
    stop = await client.get("/stream?prompt=a&stop=x&stop=y")
    assert stop.status_code == 200


async def test_post_query_parameters_other_than_format_get_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream?model=story", json={"prompt": "a"})
    assert response.status_code == 422


async def test_body_over_the_limit_gets_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream", json={"prompt": "x" * 30_000})
    assert response.status_code == 413
    assert error_of(response)["type"] == "request_too_large"


async def test_chunked_body_over_the_limit_gets_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(300):
            yield b"x" * 100
        yield b'"}'

    response = await client.post("/stream", content=chunks())
    assert response.status_code == 413


async def test_unknown_model_gets_404(client: httpx.AsyncClient) -> None:
    for model in ("nope", "nosuchprovider/x", "fake/"):
        response = await client.post("/stream", json={"prompt": "a", "model": model})
        assert response.status_code == 404
        assert error_of(response)["type"] == "unknown_model"


async def test_provider_slash_model_addresses_a_configured_provider(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/stream", json={"prompt": "a", "model": "fake/anything"})
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "fake/anything"


@pytest.mark.parametrize(
    ("model", "status", "type_"),
    [
        ("rejected", 400, "upstream_rejected"),
        ("denied", 502, "upstream_auth"),
        ("limited", 429, "upstream_rate_limited"),
        ("broken", 502, "upstream_unavailable"),
        ("overloaded", 502, "upstream_unavailable"),
        ("slow", 504, "upstream_timeout"),
        ("unrescued", 429, "upstream_rate_limited"),
        ("stubborn", 400, "upstream_rejected"),
    ],
)
async def test_upstream_failures_before_the_first_delta_get_their_status(
    client: httpx.AsyncClient, model: str, status: int, type_: str
) -> None:
    response = await client.post("/stream", json={"prompt": "a", "model": model})
    assert response.status_code == status
    assert error_of(response)["type"] == type_


async def test_fallback_serves_and_names_the_entry_that_served(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream", json={"prompt": "a", "model": "rescued"})
    assert response.status_code == 200
    assert response.text == STORY
    assert response.headers["x-gateway-model"] == "story"


async def test_unknown_route_and_method_use_the_envelope(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert (missing.status_code, error_of(missing)["type"]) == (404, "not_found")
    wrong = await client.delete("/stream")
    assert (wrong.status_code, error_of(wrong)["type"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    ("query", "accept", "content_type"),
    [
        ("", "", "text/plain; charset=utf-8"),
        ("", "text/event-stream", "text/event-stream"),
        ("", "application/x-ndjson", "application/x-ndjson"),
        ("?format=text", "text/event-stream", "text/plain; charset=utf-8"),
        ("?format=ndjson", "text/event-stream", "application/x-ndjson"),
        ("?format=sse", "", "text/event-stream"),
    ],
)
async def test_format_is_chosen_by_accept_and_query_wins(
    client: httpx.AsyncClient, query: str, accept: str, content_type: str
) -> None:
    headers = {"Accept": accept} if accept else {}
    response = await client.post(f"/stream{query}", json={"prompt": "a"}, headers=headers)
    assert response.headers["content-type"] == content_type


async def test_unknown_format_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream?format=xml", json={"prompt": "a"})
    assert response.status_code == 422


async def test_sse_events_ids_and_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream?format=sse", json={"prompt": "a"})
    stream_id = response.headers["x-stream-id"]
    assert len(stream_id) >= 22
    events = [e for e in response.text.split("\n\n") if e]
    *deltas, done = events
    text = ""
    for n, event in enumerate(deltas):
        data_line, id_line = event.split("\n")
        text += json.loads(data_line.removeprefix("data: "))
        assert id_line == f"id: {stream_id}:{n}"
    assert text == STORY
    lines = done.split("\n")
    assert lines[0] == "event: done"
    summary = json.loads(lines[1].removeprefix("data: "))
    assert summary["finish_reason"] == "stop"
    assert (summary["model"], summary["provider"]) == ("story", "fake")
    assert summary["usage"]["total_tokens"] > 0
    assert lines[2] == f"id: {stream_id}:{len(deltas)}"


async def test_stream_ids_differ_per_generation(client: httpx.AsyncClient) -> None:
    first = await client.post("/stream?format=sse", json={"prompt": "a"})
    second = await client.post("/stream?format=sse", json={"prompt": "a"})
    assert first.headers["x-stream-id"] != second.headers["x-stream-id"]


async def test_ndjson_lines_and_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/stream?format=ndjson", json={"prompt": "a"})
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    *deltas, done = lines
    assert "".join(line["text"] for line in deltas) == STORY
    assert done["done"] is True
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == len(deltas)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_last_event_id_reconnection_gets_204_and_no_generation(method: str) -> None:
    fake = CountingFake(FakeConfig(chunk_delay_ms=0))
    async with app_client(settings_from(FAST_FAKE), {"fake": fake}) as (client, _):
        response = await client.request(
            method,
            "/stream?format=sse&prompt=a" if method == "GET" else "/stream?format=sse",
            headers={"Last-Event-ID": "abc_DEF-123:41"},
            **({"json": {"prompt": "a"}} if method == "POST" else {}),
        )
        assert response.status_code == 204
        assert response.content == b""
        assert fake.calls == 0  # nobody pays twice
        fresh = await client.get("/stream?format=sse&prompt=a")  # the counter counts
        assert fresh.status_code == 200
        assert fake.calls == 1


@pytest.mark.parametrize("value", ["nocolon", ":1", "abc:", "a b:1", "abc:1x", "a" * 130 + ":1"])
async def test_malformed_last_event_id_gets_400(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/stream?prompt=a", headers={"Last-Event-ID": value})
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request"


async def test_health_and_readiness() -> None:
    async with app_client(settings_from(FAST_FAKE)) as (http, app):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        app.state.drain.draining = True
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["type"] == "unavailable"
        refused = await http.post("/stream", json={"prompt": "a"})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "unavailable"
