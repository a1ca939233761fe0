"""Hostile tool traffic on the translated path (SPEC §4.9): malformed schemas and choices,
unknown, missing and repeated call ids, arguments that are not JSON, parts of every kind in
the wrong place. Each dialect answers 2xx or a 4xx in its own envelope, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.api.test_fuzz import check_anthropic, json_values
from tests.conftest import FAST_FAKE, app_client, settings_from

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings_from(FAST_FAKE, max_body_bytes=65536)) as (http, _):
        yield http


ids = st.sampled_from(["call_1", "call_2", "", "functions.Bash:0", "x" * 300]) | json_values
names = st.sampled_from(["weather", "Write", "", "a.b", "x" * 300]) | json_values
schemas = (
    st.sampled_from(
        [
            {"type": "object", "properties": {"city": {"type": "string"}}},
            {"type": "array"},
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "additionalProperties": False,
            },
            {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}},
            {"properties": []},
        ]
    )
    | json_values
)
arguments = st.sampled_from(['{"city":"Paris"}', "{", "[1]", "", "null"]) | st.text(max_size=8)


def _check_openai(response: httpx.Response) -> None:
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == error["code"]


openai_tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "custom"]) | json_values},
        optional={
            "function": st.fixed_dictionaries(
                {"name": names}, optional={"parameters": schemas, "description": json_values}
            )
            | json_values
        },
    ),
    max_size=3,
)
openai_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": ids,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": names, "arguments": arguments}),
        }
    ),
    max_size=2,
)
openai_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.just("assistant"), "tool_calls": openai_calls}),
        st.fixed_dictionaries(
            {"role": st.just("tool"), "content": st.text(max_size=5) | json_values},
            optional={"tool_call_id": ids},
        ),
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "developer", "system"]),
                "content": st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["text", "image_url", "file", "input_audio"])},
                        optional={
                            "text": json_values,
                            "image_url": json_values,
                            "file": json_values,
                        },
                    ),
                    max_size=2,
                )
                | st.text(max_size=5),
            }
        ),
    ),
    min_size=1,
    max_size=5,
)


@FUZZ
@given(
    messages=openai_messages,
    tools=openai_tools,
    choice=st.sampled_from(["auto", "none", "required"]) | json_values,
    response_format=json_values,
    stream=st.booleans(),
)
async def test_hostile_openai_tool_traffic_is_a_4xx_in_openais_envelope(
    client: httpx.AsyncClient,
    messages: list[Any],
    tools: list[Any],
    choice: Any,
    response_format: Any,
    stream: bool,
) -> None:
    body = {
        "model": "story",
        "messages": [{"role": "user", "content": "hi"}, *messages],
        "tools": tools,
        "tool_choice": choice,
        "response_format": response_format,
        "max_tokens": 4,
        "stream": stream,
    }
    _check_openai(await client.post("/v1/chat/completions", content=json.dumps(body)))


anthropic_blocks = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("tool_use"), "id": ids, "name": names, "input": json_values}
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": ids},
        optional={"content": json_values, "is_error": json_values},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["thinking", "redacted_thinking"])},
        optional={"thinking": json_values, "signature": json_values, "data": json_values},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["image", "document", "text", "server_tool_use"])},
        optional={"source": json_values, "text": json_values, "cache_control": json_values},
    ),
)
anthropic_tools = st.lists(
    st.fixed_dictionaries(
        {"name": names},
        optional={
            "input_schema": schemas,
            "type": st.sampled_from(["custom", "web_search_20250305", "bash_20250124"]),
            "defer_loading": st.booleans(),
            "input_examples": json_values,
            "description": json_values,
        },
    ),
    max_size=3,
)


@FUZZ
@given(
    turns=st.lists(
        st.tuples(
            st.sampled_from(["user", "assistant", "system"]), st.lists(anthropic_blocks, max_size=3)
        ),
        max_size=4,
    ),
    tools=anthropic_tools,
    choice=st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "any", "tool", "none", "x"])},
        optional={"name": names, "disable_parallel_tool_use": json_values},
    )
    | json_values,
    thinking=json_values,
    stream=st.booleans(),
)
async def test_hostile_anthropic_tool_traffic_is_a_4xx_in_anthropics_envelope(
    client: httpx.AsyncClient,
    turns: list[tuple[str, list[Any]]],
    tools: list[Any],
    choice: Any,
    thinking: Any,
    stream: bool,
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    messages += [{"role": role, "content": blocks} for role, blocks in turns]
    body = {
        "model": "story",
        "max_tokens": 64,
        "messages": messages,
        "tools": tools,
        "tool_choice": choice,
        "thinking": thinking,
        "stream": stream,
    }
    response = await client.post("/v1/messages", content=json.dumps(body))
    event(f"status {response.status_code}")
    check_anthropic(response)


ui_parts = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["tool-weather", "dynamic-tool", "tool-"]),
            "state": st.sampled_from(
                ["input-streaming", "input-available", "output-available", "output-error"]
            )
            | json_values,
        },
        optional={
            "toolCallId": ids,
            "toolName": names,
            "input": json_values,
            "output": json_values,
            "errorText": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["reasoning", "file", "text", "step-start", "data-x"])},
        optional={
            "text": json_values,
            "providerMetadata": json_values,
            "url": st.sampled_from(["data:image/png;base64,AA", "https://x/a", "data:,"]),
            "mediaType": json_values,
        },
    ),
)


@FUZZ
@given(
    turns=st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "system"]), st.lists(ui_parts, max_size=3)),
        max_size=4,
    ),
    tools=st.dictionaries(names.filter(lambda n: isinstance(n, str)), json_values, max_size=2),
)
async def test_hostile_ui_tool_traffic_is_a_4xx(
    client: httpx.AsyncClient, turns: list[tuple[str, list[Any]]], tools: dict[str, Any]
) -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]
    messages += [{"role": role, "parts": parts} for role, parts in turns]
    body = {"id": "chat-1", "messages": messages, "tools": tools, "model": "story"}
    response = await client.post("/ui/chat", content=json.dumps(body))
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
