"""One neutral conversation with everything beyond text, written by each adapter in its
upstream's words (SPEC §4.9 and reference/beyond-text.md §2): tools, tool choice, calls and
their results matched by id (by name for Gemini), images, earlier reasoning going back only to
the upstream that signed it, system text from the middle of the conversation, structured
output and reasoning controls."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from gateway.errors import BadRequest
from gateway.parts import (
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
from gateway.providers.base import ChatMessage, ChatRequest
from tests.unit.providers.helpers import collect, make_adapter, mock

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"path": {"type": "string", "examples": ["a.txt"]}},
    "required": ["path"],
    "additionalProperties": False,
}
PNG = "iVBORw0KGgo="
CONVERSATION = (
    ChatMessage("user", (Text("write a.txt"), Image("image/png", PNG))),
    ChatMessage(
        "assistant",
        (
            Reasoning("plan", "sig-a", "anthropic"),
            Reasoning("", "sig-g", "gemini"),
            Text("ok"),
            ToolCall("call_1", "write_file", '{"path": "a.txt"}'),
            ToolCall("functions.read:2", "read_file", "{}"),
        ),
    ),
    ChatMessage("system", "be careful"),
    ChatMessage(
        "user",
        (
            ToolResult("call_1", "written"),
            ToolResult("functions.read:2", '{"text": "hi"}', is_error=False),
            Text("and now?"),
        ),
    ),
)


def request(**fields: Any) -> ChatRequest:
    defaults: dict[str, Any] = {
        "model": "m-1",
        "messages": CONVERSATION,
        "system": "you write files",
        "tools": (ToolSpec("write_file", "Write a file", SCHEMA), ToolSpec("read_file", None, {})),
        "tool_choice": ToolChoice("tool", "write_file"),
        "parallel_tool_calls": False,
        "response_format": JsonFormat(SCHEMA, "answer", True),
        "reasoning": ReasoningControl(effort="low"),
        "max_tokens": 4000,
    }
    return ChatRequest(**{**defaults, **fields})


async def sent_body(respx_mock: respx.MockRouter, kind: str, req: ChatRequest) -> dict[str, Any]:
    bodies = {
        "openai": b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
        "anthropic": b"event: message_stop\ndata: {}\n\n",
        "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1}}\n\n',
        "ollama": b'{"message":{"content":"x"},"done":true}\n',
    }
    route = mock(respx_mock, kind, [bodies[kind]])
    _, _, error = await collect(make_adapter(kind), req)
    assert error is None, error
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


async def test_openai_writes_calls_results_images_and_controls(
    respx_mock: respx.MockRouter,
) -> None:
    body = await sent_body(respx_mock, "openai", request())
    assert body["messages"] == [
        {"role": "system", "content": "you write files"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "write a.txt"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "write_file", "arguments": '{"path": "a.txt"}'},
                },
                {
                    "id": "functions.read:2",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": "{}"},
                },
            ],
        },
        {"role": "system", "content": "be careful"},
        {"role": "tool", "tool_call_id": "call_1", "content": "written"},
        {"role": "tool", "tool_call_id": "functions.read:2", "content": '{"text": "hi"}'},
        {"role": "user", "content": "and now?"},
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "write_file", "description": "Write a file", "parameters": SCHEMA},
    }
    assert body["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "write_file"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert body["reasoning_effort"] == "low"


async def test_anthropic_writes_blocks_signed_thinking_and_safe_ids(
    respx_mock: respx.MockRouter,
) -> None:
    body = await sent_body(respx_mock, "anthropic", request())
    assert body["system"] == "you write files\n\nbe careful"
    made_id = body["messages"][1]["content"][3]["id"]
    assert made_id.startswith("functions_read_2_") and len(made_id) == len("functions_read_2_") + 8
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "write a.txt"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "plan", "signature": "sig-a"},  # Gemini's left out
                {"type": "text", "text": "ok"},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "write_file",
                    "input": {"path": "a.txt"},
                },
                {"type": "tool_use", "id": made_id, "name": "read_file", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "written"},
                {"type": "tool_result", "tool_use_id": made_id, "content": '{"text": "hi"}'},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]
    assert body["tools"][0] == {
        "name": "write_file",
        "description": "Write a file",
        "input_schema": SCHEMA,
    }
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "write_file",
        "disable_parallel_tool_use": True,
    }
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_gemini_matches_results_by_name_cleans_schemas_and_signs_the_first_call(
    respx_mock: respx.MockRouter,
) -> None:
    body = await sent_body(respx_mock, "gemini", request())
    clean = {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
        "additionalProperties": False,
    }
    assert body["systemInstruction"] == {"parts": [{"text": "you write files\n\nbe careful"}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "write a.txt"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "ok", "thoughtSignature": "sig-g"},
                {
                    "functionCall": {"name": "write_file", "args": {"path": "a.txt"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "read_file", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "write_file", "response": {"result": "written"}}},
                {"functionResponse": {"name": "read_file", "response": {"text": "hi"}}},
                {"text": "and now?"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "write_file",
                    "description": "Write a file",
                    "parametersJsonSchema": clean,
                },
                {"name": "read_file"},
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["write_file"]}
    }
    config = body["generationConfig"]
    assert (
        config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == clean
    )
    assert config["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}


async def test_ollama_writes_object_arguments_and_tool_messages(
    respx_mock: respx.MockRouter,
) -> None:
    body = await sent_body(respx_mock, "ollama", request(tool_choice=ToolChoice("auto")))
    assert body["messages"] == [
        {"role": "system", "content": "you write files"},
        {"role": "user", "content": "write a.txt", "images": [PNG]},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"name": "write_file", "arguments": {"path": "a.txt"}},
                },
                {"id": "functions.read:2", "function": {"name": "read_file", "arguments": {}}},
            ],
        },
        {"role": "system", "content": "be careful"},
        {"role": "tool", "content": "written", "tool_call_id": "call_1", "tool_name": "write_file"},
        {
            "role": "tool",
            "content": '{"text": "hi"}',
            "tool_call_id": "functions.read:2",
            "tool_name": "read_file",
        },
        {"role": "user", "content": "and now?"},
    ]
    assert [tool["function"]["name"] for tool in body["tools"]] == ["write_file", "read_file"]
    assert body["format"] == SCHEMA and body["think"] == "low"


@pytest.mark.parametrize(
    ("kind", "fields", "says"),
    [
        ("ollama", {"tool_choice": ToolChoice("required")}, "tool_choice"),
        (
            "gemini",
            {"messages": (ChatMessage("user", (Image("image/png", url="https://x.test/a.png"),)),)},
            "inline",
        ),
        (
            "ollama",
            {"messages": (ChatMessage("user", (Image("image/png", url="https://x.test/a.png"),)),)},
            "inline",
        ),
        (
            "anthropic",
            {"messages": (ChatMessage("assistant", (ToolCall("c", "t", "[1]"),)),)},
            "not a JSON object",
        ),
        (
            "gemini",
            {"messages": (ChatMessage("user", (ToolResult("nope", "x"),)),)},
            "does not have",
        ),
    ],
)
async def test_what_an_upstream_cannot_be_asked_is_a_400_naming_it(
    respx_mock: respx.MockRouter, kind: str, fields: dict[str, Any], says: str
) -> None:
    req = ChatRequest(
        model="m-1", messages=fields.pop("messages", (ChatMessage("user", "hi"),)), **fields
    )
    mock(respx_mock, kind, [b""])
    _, _, error = await collect(make_adapter(kind), req)
    assert isinstance(error, BadRequest) and says in error.message


async def test_anthropic_thinks_only_when_every_tool_turn_carries_its_signed_thinking(
    respx_mock: respx.MockRouter,
) -> None:
    # An OpenAI client's earlier tool turn has no Anthropic signature to send back; with
    # thinking on, Anthropic would refuse the conversation, so it goes without thinking.
    unsigned = (
        ChatMessage("user", "write a.txt"),
        ChatMessage(
            "assistant", (Reasoning("", "sig-g", "gemini"), ToolCall("c1", "write_file", "{}"))
        ),
        ChatMessage("user", (ToolResult("c1", "done"),)),
    )
    body = await sent_body(respx_mock, "anthropic", request(messages=unsigned))
    assert "thinking" not in body
    body = await sent_body(respx_mock, "anthropic", request())  # signed: thinks
    assert body["thinking"]["type"] == "enabled"
