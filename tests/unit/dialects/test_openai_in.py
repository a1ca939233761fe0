"""OpenAI Chat requests read into the translated path's neutral form (SPEC §4.9)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dialects.openai_in import ChatCompletionRequest
from gateway.dialects.translated import Translated
from gateway.errors import BadRequest, GatewayError, InvalidRequest
from gateway.models import Attempt
from gateway.parts import (
    Document,
    Image,
    JsonFormat,
    Reasoning,
    ReasoningControl,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from gateway.providers.base import ChatMessage

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


def read(messages: list[dict[str, Any]] | None = None, **fields: Any) -> Translated:
    body = {"model": "m", "messages": messages or [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body).translated()


def test_a_tool_round_trip_becomes_calls_and_results_in_the_neutral_form() -> None:
    request = read(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "two cities",
                "tool_calls": [
                    CALL,
                    {**CALL, "id": "call_2", "function": {"name": "weather", "arguments": "{"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "r"}]},
            {"role": "developer", "content": [{"type": "text", "text": "answer in French"}]},
            {"role": "user", "content": "so?"},
        ],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert request.system == "be brief\n\nanswer in French"  # system text anywhere, in order
    assert request.messages == (
        ChatMessage("user", "weather in Paris and Rome?"),
        ChatMessage(
            "assistant",
            (
                Reasoning("two cities"),
                ToolCall("call_1", "weather", "{}"),
                ToolCall("call_2", "weather", "{"),  # replayed as sent: the upstream judges
            ),
        ),
        ChatMessage(
            "user",
            (
                ToolResult("call_1", "sunny", name="weather"),
                ToolResult("call_2", "r", name="weather"),
            ),
        ),
        ChatMessage("user", "so?"),
    )
    assert request.tools == (
        ToolSpec("weather", "The weather in a city", WEATHER["function"]["parameters"]),  # type: ignore[index]
    )
    assert request.tool_choice == ToolChoice("required")
    assert request.parallel_tool_calls is False


def test_images_and_files_become_parts() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,iVBO=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a"},
        },
        {"type": "file", "file": {"file_data": "JVBE"}},
    ]
    (user,) = read([{"role": "user", "content": content}]).messages
    assert user.content == (
        Text("what is this?"),
        Image(media_type="image/png", data="iVBO="),
        Image(url="https://example.com/cat.jpg"),
        Document(media_type="application/pdf", data="JVBE", title="a"),
        Document(media_type="application/pdf", data="JVBE"),
    )


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, JsonFormat()),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {}}},
            JsonFormat(schema={}, name="x", strict=True),
        ),
    ],
)
def test_response_formats(response_format: dict[str, Any], expected: JsonFormat | None) -> None:
    assert read(response_format=response_format).response_format == expected


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("high", ReasoningControl(effort="high")),
        ("none", ReasoningControl(enabled=False, effort="none")),
    ],
)
def test_reasoning_effort_is_the_reasoning_control(effort: str, expected: ReasoningControl) -> None:
    request = read(reasoning_effort=effort)
    assert request.reasoning == expected
    assert request.openai_params == {"reasoning_effort": effort}  # OpenAI upstreams: as sent


def test_a_named_choice_and_a_missing_schema() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    request = read(tools=[bare], tool_choice={"type": "function", "function": {"name": "now"}})
    assert request.tool_choice == ToolChoice("tool", "now")
    assert request.tools[0].parameters == {"type": "object", "properties": {}}


def test_the_build_merges_the_entrys_params_and_keeps_the_parts() -> None:
    attempt = Attempt("entry", None, "up", params={"temperature": 0.3, "system": "default"})  # type: ignore[arg-type]
    built = read(tools=[WEATHER], max_completion_tokens=7).build(attempt)
    assert (built.model, built.temperature, built.max_tokens) == ("up", 0.3, 7)
    assert built.system == "default"  # the entry's system prompt when the client sent none
    assert built.messages == (ChatMessage("user", "hi"),)
    assert built.tools[0].name == "weather"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
        ({"tools": [{**WEATHER, "function": {"name": "w", "parameters": []}}]}, "JSON Schema"),
        (
            {"tools": [{**WEATHER, "function": {"name": "w", "parameters": {"type": "string"}}}]},
            "parameters.type",
        ),
        ({"tools": [WEATHER, WEATHER]}, "two tools are named 'weather'"),
        ({"tool_choice": "required"}, "needs `tools`"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "'x'",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "allowed_tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "schema"),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"n": 2}, "n > 1"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["audio"]}, "modalities"),
    ],
)
def test_what_cannot_be_carried_is_a_400_naming_it(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        read(**fields)


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"role": "tool", "content": "x"}], "tool_call_id"),
        ([{"role": "tool", "content": "x", "tool_call_id": "nope"}], "no earlier assistant"),
        (
            [
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "tool", "content": "x", "tool_call_id": "call_1"},
                {"role": "tool", "content": "y", "tool_call_id": "call_1"},
            ],
            "two results",
        ),
        ([{"role": "function", "name": "f", "content": "x"}], "function messages"),
        ([{"role": "assistant", "function_call": {"name": "f"}}], "function_call"),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x"}}],
                }
            ],
            "text only",
        ),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "'input_audio'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "url"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://10.0.0.1/"}}],
                }
            ],
            "https",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
            "file_id",
        ),
        ([{"role": "user", "content": [{"type": "file", "file": {}}]}], "file_data"),
        ([{"role": "user", "content": [{"type": "text"}]}], "text"),
        ([{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}], "'refusal'"),
    ],
)
def test_malformed_conversations_are_refused_naming_the_message(
    messages: list[dict[str, Any]], needle: str
) -> None:
    with pytest.raises(GatewayError, match=needle) as raised:
        read(messages)
    assert raised.value.status in (400, 422)


def test_a_malformed_data_url_is_invalid() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}
    with pytest.raises(InvalidRequest, match="base64 data URL"):
        read([{"role": "user", "content": [part]}])


def test_an_assistants_refusal_part_is_its_text() -> None:
    refusal = {"type": "refusal", "refusal": "I can't."}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": [refusal]}]
    assert read(messages).messages[1] == ChatMessage("assistant", "I can't.")


def test_odd_but_valid_parts() -> None:
    image_as_file = {"type": "file", "file": {"file_data": "data:image/png;base64,iVBO"}}
    messages = [
        {"role": "user", "content": [image_as_file]},
        {"role": "assistant", "content": None, "refusal": "I won't."},
    ]
    user, assistant = read(messages).messages
    assert user.content == (Document(media_type="image/png", data="iVBO"),)
    assert assistant.content == "I won't."


def test_a_tool_message_holds_text_only() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
    messages = [
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [image]},
    ]
    with pytest.raises(BadRequest, match="messages.1: a tool message may hold text only"):
        read(messages)


def test_a_signature_in_a_call_id_comes_back_as_reasoning_before_its_call() -> None:
    signed = "call_1~gw1.gemini.c2ln"
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{**CALL, "id": signed}]},
        {"role": "tool", "tool_call_id": signed, "content": "ok"},
    ]
    _, assistant, results = read(messages).messages
    assert assistant.content == (
        Reasoning("", "c2ln", "gemini"),
        ToolCall("call_1", "weather", "{}"),
    )
    assert results.content == (ToolResult("call_1", "ok", name="weather"),)


@pytest.mark.parametrize("call_id", ["call~gw1.", "~gw1.gemini.x", "call~gw1.gemini", "a.b:0"])
def test_ids_that_only_look_signed_are_ids(call_id: str) -> None:
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{**CALL, "id": call_id}]},
    ]
    assert read(messages).messages[1].content == (ToolCall(call_id, "weather", "{}"),)
