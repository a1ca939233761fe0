"""Anthropic Messages requests read into the translated path's neutral form (SPEC §4.9),
Claude Code's request first (reference/beyond-text.md, appendix)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from gateway.dialects.anthropic_in import MessagesRequest
from gateway.dialects.translated import Translated, signature_in
from gateway.errors import BadRequest
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
    client_signature,
)
from gateway.providers.base import ChatMessage

WRITE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
    "required": ["file_path", "content"],
    "additionalProperties": False,
}
CACHE = {"type": "ephemeral"}


def read(**fields: Any) -> Translated:
    body = {"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate({**body, **fields}).translated()


def claude_code_turn_two() -> dict[str, Any]:
    """What Claude Code sends on its second turn, in the shape it was captured."""
    return {
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": CACHE},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>…</system-reminder>"},
                    {"type": "text", "text": "write hello.txt", "cache_control": CACHE},
                ],
            },
            {"role": "system", "content": "Environment: linux"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "a file", "signature": "EqQBCkYIBxgC"},
                    {"type": "redacted_thinking", "data": "gw1.gemini.c2ln"},
                    {"type": "text", "text": "Writing it."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "Write",
                        "input": {"file_path": "hello.txt", "content": "hi"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": "File created",
                        "cache_control": CACHE,
                    }
                ],
            },
        ],
        "tools": [
            {"name": "Write", "description": "Write a file", "input_schema": WRITE_SCHEMA},
            {"name": "Deferred", "defer_loading": True, "input_schema": {"type": "object"}},
        ],
        "metadata": {"user_id": '{"session_id":"s-1"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
    }


def test_claude_codes_request_maps_and_its_hints_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway.dialects"):
        request = read(**claude_code_turn_two())
    assert request.system == (
        "x-anthropic-billing-header: cc_version=2.1\n\nYou are Claude Code.\n\nEnvironment: linux"
    )
    assert request.messages == (
        ChatMessage("user", "<system-reminder>…</system-reminder>\n\nwrite hello.txt"),
        ChatMessage(
            "assistant",
            (
                Reasoning("a file", "EqQBCkYIBxgC", "anthropic"),
                Reasoning("", "c2ln", "gemini", redacted=True),
                Text("Writing it."),
                ToolCall("toolu_01", "Write", '{"file_path":"hello.txt","content":"hi"}'),
            ),
        ),
        ChatMessage("user", (ToolResult("toolu_01", "File created", name="Write"),)),
    )
    # The schema goes on as sent ($schema and additionalProperties are the adapters' call);
    # the deferred placeholder is dropped.
    assert request.tools == (ToolSpec("Write", "Write a file", WRITE_SCHEMA),)
    assert request.reasoning == ReasoningControl(effort="high")
    dropped = " ".join(record.getMessage() for record in caplog.records)
    for hint in ("context_management", "metadata", "thinking.display", "tools.1 (Deferred)"):
        assert f"dropped {hint}" in dropped


def test_media_blocks_and_tool_results_with_images() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    content = [
        {"type": "text", "text": "look"},
        image,
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {
            "type": "document",
            "title": "doc",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "é"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    ]
    assistant = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
    }
    result = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "is_error": True,
        "content": [{"type": "text", "text": "blurry"}, image],
    }
    request = read(
        messages=[
            {"role": "user", "content": content},
            assistant,
            {"role": "user", "content": [result]},
        ]
    )
    assert request.messages[0].content == (
        Text("look"),
        Image(media_type="image/png", data="AA"),
        Image(url="https://example.com/a.png"),
        Document(media_type="application/pdf", data="JVBE", title="doc"),
        Document(media_type="text/plain", data=base64.b64encode("é".encode()).decode()),
        Document(url="https://example.com/a.pdf"),
    )
    assert request.messages[2].content == (
        ToolResult(
            "t1",
            (Text("blurry"), Image(media_type="image/png", data="AA")),
            is_error=True,
            name="shot",
        ),
    )


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, ToolChoice("auto"), None),
        ({"type": "none"}, ToolChoice("none"), None),
        ({"type": "any", "disable_parallel_tool_use": True}, ToolChoice("required"), False),
        ({"type": "tool", "name": "Write"}, ToolChoice("tool", "Write"), None),
    ],
)
def test_tool_choices(choice: dict[str, Any], expected: ToolChoice, parallel: bool | None) -> None:
    tools = [{"name": "Write", "input_schema": WRITE_SCHEMA}]
    request = read(tools=tools, tool_choice=choice)
    assert (request.tool_choice, request.parallel_tool_calls) == (expected, parallel)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            ReasoningControl(budget_tokens=2048),
        ),
        ({"thinking": {"type": "disabled"}}, ReasoningControl(enabled=False)),
        ({"thinking": {"type": "adaptive"}}, ReasoningControl()),
        ({"output_config": {"effort": "low"}}, ReasoningControl(effort="low")),
        ({"output_config": {"effort": "max"}}, ReasoningControl(effort="xhigh")),
        ({}, None),
    ],
)
def test_reasoning_controls(fields: dict[str, Any], expected: ReasoningControl | None) -> None:
    assert read(**fields).reasoning == expected


def test_structured_output_and_input_examples() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = read(
        output_config={"format": {"type": "json_schema", "schema": schema}},
        tools=[{"name": "f", "description": "F.", "input_examples": [{"a": 1}]}],
    )
    assert request.response_format == JsonFormat(schema=schema)
    assert request.tools == (
        ToolSpec("f", 'F.\n\nInput examples: [{"a":1}]', {"type": "object", "properties": {}}),
    )


@pytest.mark.parametrize(
    ("signature", "origin"),
    [("EqQBCkYIBxgC+/=", "anthropic"), ("c2ln.with.dots", "gemini"), ("x", "openai")],
)
def test_signatures_of_other_upstreams_round_trip_with_their_origin(
    signature: str, origin: str
) -> None:
    sent = client_signature(signature, origin, "anthropic")
    assert (origin == "anthropic") == (sent == signature)
    assert signature_in(sent) == (signature, origin)


def test_a_thinking_block_without_a_signature_has_no_origin() -> None:
    thinking = {"type": "thinking", "thinking": "hm", "signature": ""}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": [thinking]}]
    assert read(messages=messages).messages[1].content == (Reasoning("hm"),)
    assert signature_in("gw1.") == ("gw1.", "anthropic")  # no origin named: Anthropic's own


@pytest.mark.parametrize(
    ("block", "role", "needle"),
    [
        ({"type": "tool_use", "id": "t", "name": "f", "input": []}, "assistant", "input"),
        ({"type": "tool_use", "name": "f"}, "assistant", ".id"),
        ({"type": "tool_result", "tool_use_id": "t", "content": 5}, "user", "content"),
        (
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]},
            "user",
            "'document' blocks",
        ),
        ({"type": "image"}, "user", "source"),
        ({"type": "image", "source": {"type": "file", "file_id": "f"}}, "user", "'file'"),
        ({"type": "image", "source": {"type": "base64"}}, "user", "media_type"),
        ({"type": "redacted_thinking"}, "assistant", "data"),
        ({"type": "server_tool_use", "id": "s", "name": "web_search"}, "assistant", "server_tool"),
        ({"type": "tool_use", "id": "t", "name": "f"}, "user", "'tool_use'"),
    ],
)
def test_blocks_that_cannot_be_carried_are_refused_naming_them(
    block: dict[str, Any], role: str, needle: str
) -> None:
    messages = [{"role": "user", "content": "x"}, {"role": role, "content": [block]}]
    with pytest.raises(BadRequest, match=needle) as raised:
        read(messages=messages)
    assert "messages.1.content.0" in raised.value.message


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"tools": [{"name": "", "input_schema": {}}]}, "tools.0.name"),
        ({"tools": [{"name": "f", "description": 5}]}, "description"),
        ({"tools": [{"name": "f", "input_schema": {"properties": []}}]}, "properties"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled", "budget_tokens": True}}, "thinking"),
    ],
)
def test_malformed_controls_are_refused_naming_them(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        read(**fields)


def test_a_tool_result_of_text_blocks_is_its_text() -> None:
    call = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    blocks = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    result = {"type": "tool_result", "tool_use_id": "t", "content": blocks}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    assert read(messages=messages).messages[2].content == (ToolResult("t", "a\n\nb", name="f"),)


def test_an_input_nested_deeper_than_json_is_written_is_a_400() -> None:
    nested: Any = {}
    for _ in range(300):
        nested = {"a": nested}
    call = {"type": "tool_use", "id": "t", "name": "f", "input": nested}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": [call]}]
    with pytest.raises(BadRequest, match="messages.1.content.0.input: nested too deeply"):
        read(messages=messages)
