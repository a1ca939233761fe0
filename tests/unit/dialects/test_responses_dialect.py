"""The Responses dialect's reading and writing (SPEC §4.10) without sockets: every item, part,
tool and control in the neutral request or as a clear 4xx naming the field; the encoder's
event sequence for reasoning, calls the upstream never ended and the incomplete endings."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.dialects.responses import ResponsesEncoder, output_items, parse_request
from gateway.errors import BadRequest, GatewayError, InvalidRequest, UpstreamUnavailable
from gateway.models import Attempt
from gateway.parts import (
    Document,
    Image,
    JsonFormat,
    Reasoning,
    ReasoningControl,
    ReasoningEnd,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
)
from gateway.providers.base import StreamOutcome, Usage


def read(**fields: Any) -> Any:
    return parse_request({"model": "m", **fields}, [])


def test_a_string_input_is_one_user_message() -> None:
    request = read(input="hi", instructions="sys")
    assert [(m.role, m.content) for m in request.messages] == [("user", "hi")]
    assert request.system == "sys"
    assert read().messages == ()


def test_parts_of_every_kind() -> None:
    content = [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
        {"type": "input_image", "image_url": "https://example.com/a.png"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a"},
    ]
    items = [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {
            "type": "function_call_output",
            "call_id": "c",
            "output": [{"type": "input_text", "text": "r"}],
        },
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "gw1.anthropic.r:data"},
    ]
    user, assistant, result, thinking = read(input=items).messages
    assert user.content == (
        Text("look"),
        Image("image/png", "AAAA"),
        Image(url="https://example.com/a.png"),
        Document("application/pdf", "JVBE", title="a"),
    )
    assert assistant.content == "no"
    assert result.content == (ToolResult("c", (Text("r"),)),)
    assert thinking.content == (
        Reasoning("thought"),
        Reasoning("", "data", "anthropic", redacted=True),
    )


def test_controls_in_neutral_words() -> None:
    request = read(
        tool_choice="required",
        reasoning={"effort": "none"},
        text={"format": {"type": "json_object"}},
        parallel_tool_calls=False,
        temperature=1,
        top_p=0.5,
        max_output_tokens=7,
    )
    assert request.tool_choice == ToolChoice("required")
    assert request.reasoning == ReasoningControl(enabled=False)
    assert request.response_format == JsonFormat()
    assert (request.parallel_tool_calls, request.temperature, request.top_p) == (False, 1.0, 0.5)
    schema = {"type": "object"}
    request = read(
        text={"format": {"type": "json_schema", "name": "n", "schema": schema, "strict": True}},
        tool_choice={"type": "custom", "name": "apply_patch"},
        reasoning={"effort": "high"},
    )
    assert request.response_format == JsonFormat(schema, "n", True)
    assert request.tool_choice == ToolChoice("tool", "apply_patch")
    assert read(text={"format": {"type": "text"}}).response_format is None


def test_the_entry_system_prompt_when_the_client_has_none() -> None:
    provider = SimpleNamespace(name="up")
    attempt = Attempt("m", provider, "up-model", {"system": "entry", "stop": "END"})  # type: ignore[arg-type]
    built = read(input="hi").builder()(attempt)
    assert (built.system, built.stop, built.model) == ("entry", ("END",), "up-model")
    built = read(input="hi", instructions="mine").builder()(attempt)
    assert built.system == "mine"


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"model": 5}, InvalidRequest, "model"),
        ({"conversation": "conv_1"}, BadRequest, "conversation"),
        ({"background": True}, BadRequest, "background"),
        ({"prompt": {"id": "pmpt_1"}}, BadRequest, "prompt"),
        ({"text": "json"}, InvalidRequest, "text"),
        ({"stream": "yes"}, InvalidRequest, "stream"),
        ({"temperature": 3}, InvalidRequest, "temperature"),
        ({"temperature": True}, InvalidRequest, "temperature"),
        ({"input": [{"type": "web_search_call"}]}, BadRequest, "web_search_call"),
        ({"input": [{"role": "user", "content": 5}]}, InvalidRequest, "content"),
        ({"input": [{"role": "user", "content": ["x"]}]}, InvalidRequest, "object"),
        (
            {
                "input": [
                    {
                        "role": "system",
                        "content": [{"type": "input_image", "image_url": "https://x"}],
                    }
                ]
            },
            BadRequest,
            "text only",
        ),
        ({"input": [{"role": "user", "content": [{"type": "audio"}]}]}, BadRequest, "audio"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            BadRequest,
            "file_id",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "data:x"}]}
                ]
            },
            BadRequest,
            "base64",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            BadRequest,
            "file_data",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
            InvalidRequest,
            "output",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_file", "file_data": "data:a;base64,b"}],
                    }
                ]
            },
            BadRequest,
            "text and images",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            InvalidRequest,
            "strings",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "", "output": ""}]},
            InvalidRequest,
            "call_id",
        ),
        ({"tools": {}}, InvalidRequest, "tools"),
        ({"tools": [{"name": "x"}]}, InvalidRequest, "type"),
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": 5}]},
            InvalidRequest,
            "tools.0.tools",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": []}]},
            InvalidRequest,
            "parameters",
        ),
        ({"tools": [{"type": "mystery", "name": "m"}]}, BadRequest, "mystery"),
        (
            {
                "tools": [
                    {
                        "type": "namespace",
                        "name": "n" * 40,
                        "tools": [{"type": "function", "name": "f" * 30}],
                    }
                ]
            },
            BadRequest,
            "too long",
        ),
        ({"tool_choice": "sometimes"}, InvalidRequest, "tool_choice"),
        ({"tool_choice": {"type": "file_search"}}, BadRequest, "file_search"),
        ({"reasoning": {"effort": 3}}, InvalidRequest, "effort"),
        ({"text": {"format": "json"}}, InvalidRequest, "format"),
    ],
)
def test_what_cannot_be_read_names_the_field(
    fields: dict[str, Any], error: type[GatewayError], words: str
) -> None:
    with pytest.raises(error, match=words):
        parse_request({"model": "m", **fields}, [])


def relay(finish: str | None = None) -> Any:
    outcome = StreamOutcome(finish_reason=finish, usage=Usage(3, 4, 1))
    return SimpleNamespace(model="m", outcome=outcome)


def events_of(frames: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(block.split("\ndata: ", 1)[1])
        for block in frames.decode().split("\n\n")
        if block
    ]


def test_reasoning_calls_never_ended_and_an_incomplete_ending() -> None:
    request = read(tools=[{"type": "custom", "name": "apply_patch"}])
    encoder = ResponsesEncoder(relay("length"), "s", request)
    frames = encoder.opening()
    frames += encoder.part(ReasoningEnd("sig", "gemini"))  # a signature with no thought text
    frames += encoder.part(ToolCallDelta(9, "{}"))  # a call that never started: nothing
    frames += encoder.part(ToolCallEnd(9))
    frames += encoder.part(ToolCallStart(0, "call_1", "apply_patch"))
    frames += encoder.part(ToolCallDelta(0, '{"input": "x"}'))
    frames += encoder.part(ToolCallStart(1, "call_2", "other"))
    frames += b"".join(encoder.closing())
    events = events_of(frames)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["usage"]["input_tokens_details"] == {"cached_tokens": 1}
    reasoning, custom, other = last["response"]["output"]
    assert reasoning["encrypted_content"] == "gw1.gemini.s:sig"
    assert (custom["type"], custom["input"]) == ("custom_tool_call", "x")
    assert (other["type"], other["arguments"]) == ("function_call", "")


def test_a_filtered_answer_is_incomplete_and_a_failure_is_failed() -> None:
    encoder = ResponsesEncoder(relay("content_filter"), "s", read())
    closing = events_of(b"".join(encoder.closing()))
    assert closing[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}
    failed = events_of(encoder.error_frame(UpstreamUnavailable("gone")))
    assert failed[0]["response"]["error"] == {"code": "upstream_unavailable", "message": "gone"}


def test_whole_answers_map_custom_inputs_that_are_not_json() -> None:
    request = read(tools=[{"type": "custom", "name": "apply_patch"}])
    blocks = [Reasoning("t"), Text("a"), ToolCall("c", "apply_patch", "not json")]
    reasoning, message, call = output_items(blocks, request.names, "p")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "t"}]
    assert message["content"][0]["text"] == "a"
    assert call["input"] == "not json"
