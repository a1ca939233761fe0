"""/v1/messages before the commit point: Anthropic's envelope and status/type pairs, keys,
limits and refusals, in process (streaming behaviour is in tests/e2e/test_anthropic_sdk.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.auth import hash_key
from tests.conftest import FAST_FAKE, app_client, settings_from

KEY = "gw-anthropic-client-key"
FAULTS = "".join(
    f"[models.fail{status}]\nprovider = 'fake'\nparams = {{ fail_status = {status} }}\n"
    for status in (400, 401, 408, 429, 500, 503, 529)
)


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "story",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings_from(FAST_FAKE + FAULTS, max_body_bytes=4096)) as (http, _):
        yield http


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"type", "error", "request_id"}
    assert data["type"] == "error"
    assert set(data["error"]) == {"type", "message"}
    assert data["error"]["type"] == kind
    assert data["request_id"] == response.headers["x-request-id"]
    return str(data["error"]["message"])


@pytest.mark.parametrize(
    ("content", "status", "kind", "needle"),
    [
        (b"{oops", 400, "invalid_request_error", "not valid JSON"),
        (b"[1]", 400, "invalid_request_error", "JSON object"),
        (b'{"model": "story", "messages": []}', 400, "invalid_request_error", "max_tokens"),
        (b'{"model": "story", "max_tokens": 5}', 400, "invalid_request_error", "messages"),
        (
            b'{"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}',
            404,
            "not_found_error",
            "unknown model",
        ),
        (
            b'{"model": "story", "max_tokens": 5, "temperature": 1.5, '
            b'"messages": [{"role": "user", "content": "x"}]}',
            400,
            "invalid_request_error",
            "temperature",
        ),
        (
            b'{"model": "story", "max_tokens": 5, "bogus": 1, '
            b'"messages": [{"role": "user", "content": "x"}]}',
            400,
            "invalid_request_error",
            "bogus",
        ),
        (b"x" * 5000, 413, "request_too_large", "larger than"),
    ],
)
async def test_invalid_requests_use_anthropics_envelope(
    client: httpx.AsyncClient, content: bytes, status: int, kind: str, needle: str
) -> None:
    response = await client.post("/v1/messages", content=content)
    assert needle in anthropic_error(response, status, kind)


def user_blocks(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


IMAGE_URL = {"type": "image", "source": {"type": "url", "url": "http://10.0.0.1/x.png"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"container": "container_1"}, "container"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        (
            {
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "no tool is named 'g'",
        ),
        ({"tools": [{"name": "f", "input_schema": {"type": "array"}}]}, "input_schema.type"),
        ({"tools": [{"name": "f", "input_schema": "{}"}]}, "input_schema"),
        ({"thinking": {"type": "enabled", "budget_tokens": 64}}, "budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
        (user_blocks(IMAGE_URL), "messages.0.content.0.source.url"),
        (user_blocks(RESULT), "no earlier assistant message called"),
        (user_blocks({"type": "thinking", "thinking": "x"}), "'thinking' content blocks"),
        (user_blocks({"type": "search_result", "source": "x"}), "'search_result'"),
    ],
)
async def test_what_cannot_be_carried_is_a_400_naming_it(
    client: httpx.AsyncClient, fields: dict[str, Any], needle: str
) -> None:
    response = await client.post("/v1/messages", json=body(**fields))
    assert needle in anthropic_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("model", "status", "kind"),
    [
        ("fail400", 400, "invalid_request_error"),
        ("fail401", 500, "api_error"),
        ("fail408", 504, "timeout_error"),
        ("fail429", 429, "rate_limit_error"),
        ("fail500", 500, "api_error"),
        ("fail503", 529, "overloaded_error"),
        ("fail529", 529, "overloaded_error"),
    ],
)
async def test_upstream_failures_use_anthropics_status_and_type(
    client: httpx.AsyncClient, model: str, status: int, kind: str
) -> None:
    for stream in (True, False):
        response = await client.post("/v1/messages", json=body(model=model, stream=stream))
        assert "scripted failure" in anthropic_error(response, status, kind)
        if status in (429, 529):
            assert response.headers["retry-after"] == "1"


async def test_the_same_failure_keeps_the_gateways_types_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    native = await client.post("/stream", json={"model": "fail529", "prompt": "x"})
    assert native.status_code == 502
    assert native.json()["error"]["type"] == "upstream_unavailable"
    openai = await client.post(
        "/v1/chat/completions",
        json={"model": "fail529", "messages": [{"role": "user", "content": "x"}]},
    )
    assert openai.status_code == 502
    assert openai.json()["error"]["code"] == "upstream_unavailable"


async def test_beta_query_and_non_streaming_message(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages?beta=true",
        json=body(
            system=[{"type": "text", "text": "be brief"}],
            metadata={"user_id": "u-1"},
            top_k=3,
            stop_sequences=[],
            max_tokens=1024,  # the whole story: the fake provider honours max_tokens
        ),
        headers={"anthropic-version": "2023-06-01", "x-api-key": "ignored-when-open"},
    )
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "story" and message["id"].startswith("msg_")
    assert message["stop_reason"] == "end_turn"
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"].startswith("Rick:")
    assert message["usage"]["output_tokens"] > 0
    assert response.headers["x-gateway-provider"] == "fake"


async def test_count_tokens_is_a_documented_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages/count_tokens", json=body())
    assert "token counting" in anthropic_error(response, 404, "not_found_error")


async def test_wrong_method_is_answered_in_anthropics_envelope(client: httpx.AsyncClient) -> None:
    anthropic_error(await client.get("/v1/messages"), 405, "invalid_request_error")


async def test_bad_forwarded_header_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", json=body(), headers={"anthropic-beta": "x" * 2000}
    )
    assert "anthropic-beta" in anthropic_error(response, 400, "invalid_request_error")


def keyed(**limits: object) -> str:
    extra = "".join(f"{name} = {value!r}\n" for name, value in limits.items())
    return (
        FAST_FAKE
        + "[models.other]\nprovider = 'fake'\n"
        + f"[keys.claude]\nsha256 = '{hash_key(KEY)}'\nmodels = ['story']\n{extra}"
    )


async def test_keys_in_x_api_key_or_bearer_and_refusals_in_anthropics_envelope() -> None:
    async with app_client(settings_from(keyed(rpm=2))) as (http, _):
        missing = await http.post("/v1/messages", json=body())
        anthropic_error(missing, 401, "authentication_error")
        wrong = await http.post("/v1/messages", json=body(), headers={"x-api-key": "nope"})
        anthropic_error(wrong, 401, "authentication_error")
        count = await http.post("/v1/messages/count_tokens", json=body())
        anthropic_error(count, 401, "authentication_error")
        forbidden = await http.post(
            "/v1/messages", json=body(model="other"), headers={"x-api-key": KEY}
        )
        anthropic_error(forbidden, 403, "permission_error")
        ok = await http.post("/v1/messages", json=body(), headers={"x-api-key": KEY})
        assert ok.status_code == 200
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert (await http.post("/v1/messages", json=body(), headers=bearer)).status_code == 200
        limited = await http.post("/v1/messages", json=body(), headers={"x-api-key": KEY})
        anthropic_error(limited, 429, "rate_limit_error")
        assert int(limited.headers["retry-after"]) >= 1
