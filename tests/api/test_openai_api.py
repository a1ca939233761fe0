"""/v1 routes before the commit point: OpenAI's error shape and statuses, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.parts import JsonFormat, ToolCall, ToolChoice, ToolResult
from tests.api.test_ui_api import RecordingProvider
from tests.conftest import FAST_FAKE, app_client, settings_from


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings_from(FAST_FAKE)) as (http, _):
        yield http


def openai_error(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error["code"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        (b"{oops", 422, "invalid_request"),
        (b'{"model": "story"}', 422, "invalid_request"),
        (b'{"model": "story", "messages": [], "stream": true}', 422, "invalid_request"),
        (
            b'{"model": "story", "messages": [{"role": "user", "content": "x"}], "bogus": 1}',
            422,
            "invalid_request",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "unknown_model",
        ),
        (
            b'{"model": "story", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}',
            400,
            "invalid_request",
        ),
    ],
)
async def test_chat_completions_errors_use_openai_shape(
    client: httpx.AsyncClient, body: bytes, status: int, type_: str
) -> None:
    response = await client.post("/v1/chat/completions", content=body)
    assert response.status_code == status
    assert openai_error(response)["type"] == type_


async def test_developer_role_and_text_parts_reach_the_upstream_as_system_and_text() -> None:
    recording = RecordingProvider()
    settings = settings_from(
        FAST_FAKE
        + "[providers.recording]\ntype = 'fake'\n[models.recorded]\nprovider = 'recording'\n"
    )
    body = {
        "model": "recorded",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "refusal": None},
            {"role": "user", "content": "again", "name": "me"},
        ],
        "metadata": {"a": "b"},
        "store": False,
        "n": 1,
        "tool_choice": "none",
        "response_format": {"type": "text"},
    }
    async with app_client(settings, {"recording": recording}) as (client, _):
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    assert response.headers["x-gateway-model"] == "recorded"
    (sent,) = recording.requests
    # The developer message is the system prompt the upstream receives; text parts are text.
    assert sent.system == "be brief"
    assert [(m.role, m.content) for m in sent.messages] == [
        ("user", "hi"),
        ("assistant", ""),
        ("user", "again"),
    ]


async def test_models_list_shape(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert body["data"] == [{"id": "story", "object": "model", "created": 0, "owned_by": "fake"}]


async def test_unknown_v1_route_uses_openai_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert openai_error(response)["type"] == "not_found"


USER = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools.0.type"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [*USER, {"role": "tool", "tool_call_id": "call_9", "content": "r"}]},
            "'call_9', which no earlier assistant message called",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "file:///etc/x"}}],
                    }
                ]
            },
            "messages.0.content.0.image_url.url: only data URLs and https URLs",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
    ],
)
async def test_what_cannot_be_carried_is_a_400_naming_it(
    client: httpx.AsyncClient, fields: dict[str, object], needle: str
) -> None:
    body = {"model": "story", "messages": USER, **fields}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = openai_error(response)
    assert error["type"] == "invalid_request" and needle in str(error["message"])


async def test_tools_and_their_results_reach_the_upstream_as_parts() -> None:
    recording = RecordingProvider()
    settings = settings_from(
        FAST_FAKE
        + "[providers.recording]\ntype = 'fake'\n[models.recorded]\nprovider = 'recording'\n"
    )
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = {
        "model": "recorded",
        "messages": [
            *USER,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
    }
    async with app_client(settings, {"recording": recording}) as (client, _):
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    (sent,) = recording.requests
    assert [tool.name for tool in sent.tools] == ["f"]
    assert (sent.tool_choice, sent.parallel_tool_calls) == (ToolChoice("auto"), False)
    assert sent.response_format == JsonFormat()
    assert sent.messages[1].content == (ToolCall("call_1", "f", "{}"),)
    assert sent.messages[2].content == (ToolResult("call_1", "done", name="f"),)
