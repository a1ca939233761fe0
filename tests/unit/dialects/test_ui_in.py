"""`useChat` messages read into the translated path's neutral form (SPEC §4.6, §4.9): what
`ai` 5.0's `useChat` sends back after a client-side tool ran."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dialects.ui_messages import UIChatRequest
from gateway.errors import GatewayError, InvalidRequest
from gateway.parts import Document, Image, Reasoning, Text, ToolCall, ToolResult, ToolSpec
from gateway.providers.base import ChatMessage

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def chat(*messages: dict[str, Any], **fields: Any) -> UIChatRequest:
    return UIChatRequest.model_validate({"id": "c1", "messages": list(messages), **fields})


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": list(parts)}


def test_a_client_side_tool_round_trip_becomes_steps_of_calls_and_results() -> None:
    signed = {"gateway": {"signature": "c2ln", "origin": "gemini", "redacted": False}}
    answer = {
        "id": "a",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "need weather", "providerMetadata": signed},
            {
                "type": "tool-weather",
                "toolCallId": "call_1",
                "state": "output-available",
                "input": {"city": "Paris"},
                "output": {"sky": "clear"},
            },
            {
                "type": "dynamic-tool",
                "toolName": "clock",
                "toolCallId": "call_2",
                "state": "output-error",
                "input": {},
                "errorText": "no clock",
            },
            {"type": "step-start"},
            {"type": "text", "text": "Clear in Paris."},
            {"type": "source-url", "sourceId": "s", "url": "https://x"},
            {"type": "tool-note", "toolCallId": "call_3", "state": "input-available", "input": 1},
        ],
    }
    request = chat(
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "be brief"}]},
        user({"type": "text", "text": "weather?"}, {"type": "data-app", "data": {}}),
        answer,
        tools={"weather": {"description": "The weather", "inputSchema": SCHEMA}},
        system="You help.",
    ).translated()
    assert request.system == "You help.\n\nbe brief"
    assert request.tools == (ToolSpec("weather", "The weather", SCHEMA),)
    assert request.messages == (
        ChatMessage("user", "weather?"),
        ChatMessage(
            "assistant",
            (
                Reasoning("need weather", "c2ln", "gemini"),
                ToolCall("call_1", "weather", '{"city":"Paris"}'),
                ToolCall("call_2", "clock", "{}"),
            ),
        ),
        ChatMessage(
            "user",
            (
                ToolResult("call_1", '{"sky":"clear"}', name="weather"),
                ToolResult("call_2", "no clock", is_error=True, name="clock"),
            ),
        ),
        ChatMessage("assistant", (Text("Clear in Paris."), ToolCall("call_3", "note", "1"))),
    )


def test_file_parts_are_images_and_documents() -> None:
    request = chat(
        user(
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBO"},
            {
                "type": "file",
                "mediaType": "application/pdf",
                "url": "https://x/a.pdf",
                "filename": "a",
            },
            {"type": "file", "mediaType": "image/jpeg", "url": "https://x/b.jpg"},
        )
    ).translated()
    assert request.messages[0].content == (
        Image(media_type="image/png", data="iVBO"),
        Document(media_type="application/pdf", url="https://x/a.pdf", title="a"),
        Image(media_type="image/jpeg", url="https://x/b.jpg"),
    )


def test_a_string_output_and_reasoning_without_our_metadata() -> None:
    answer = {
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "text": "hm", "providerMetadata": {"openai": {"x": 1}}},
            {"type": "tool-f", "toolCallId": "c", "state": "output-available", "output": "done"},
        ],
    }
    request = chat(user({"type": "text", "text": "go"}), answer).translated()
    assert request.messages[1].content == (Reasoning("hm"), ToolCall("c", "f", "{}"))
    assert request.messages[2].content == (ToolResult("c", "done", name="f"),)


@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"type": "tool-f", "toolCallId": "c", "state": "input-streaming"}, "state"),
        ({"type": "tool-f", "state": "output-available"}, "toolCallId"),
        ({"type": "dynamic-tool", "toolCallId": "c", "state": "input-available"}, "name"),
        ({"type": "tool-f", "toolCallId": "c" * 300, "state": "input-available"}, "256"),
        ({"type": "file", "mediaType": "image/png", "url": "data:,"}, "'file'"),
        ({"type": "text"}, "text"),
        ({"type": "reasoning"}, "text"),
        ({"type": "weird"}, "'weird'"),
    ],
)
def test_assistant_parts_that_cannot_be_sent_are_422_naming_them(
    part: dict[str, Any], needle: str
) -> None:
    answer = {"role": "assistant", "parts": [part]}
    with pytest.raises(InvalidRequest, match=needle) as raised:
        chat(user({"type": "text", "text": "go"}), answer).translated()
    assert "messages.1.parts.0" in raised.value.message


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "parts": [{"type": "step-start"}]}],
        [
            {
                "role": "system",
                "parts": [{"type": "file", "mediaType": "image/png", "url": "https://x"}],
            }
        ],
        [
            {
                "role": "user",
                "parts": [{"type": "file", "mediaType": "image/png", "url": "http://x"}],
            }
        ],
    ],
)
def test_conversations_that_cannot_be_sent_are_refused(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(GatewayError) as raised:
        chat(*messages).translated()
    assert raised.value.status in (400, 422)


def test_a_tool_without_a_schema_takes_no_parameters() -> None:
    request = chat(user({"type": "text", "text": "x"}), tools={"now": {}}).translated()
    assert request.tools == (ToolSpec("now", None, {"type": "object", "properties": {}}),)


def test_an_assistants_empty_text_parts_say_nothing() -> None:
    answer = {
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": ""},  # the stream's text part, opened before a tool call
            {"type": "tool-f", "toolCallId": "c", "state": "output-available", "output": "ok"},
        ],
    }
    empty = {"role": "assistant", "parts": [{"type": "text", "text": ""}]}
    request = chat(user({"type": "text", "text": "go"}), answer, empty).translated()
    assert [m.content for m in request.messages] == [
        "go",
        (ToolCall("c", "f", "{}"),),
        (ToolResult("c", "ok", name="f"),),
    ]
