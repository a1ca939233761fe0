"""An `openai` provider with `api = "responses"` as the translated path's upstream (SPEC §4.10):
the neutral request as a Responses body, and the recorded Responses streams read into text,
reasoning and tool-call parts at every cut, with usage and why they ended; failures are the
upstream's errors, a stream without its terminal event is truncated."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import respx

from gateway.errors import UpstreamProtocolError, UpstreamUnavailable
from gateway.parts import (
    Document,
    Image,
    JsonFormat,
    Reasoning,
    ReasoningControl,
    ReasoningDelta,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from gateway.providers.base import ChatMessage
from tests.conftest import wire
from tests.e2e.test_codex import text_answer
from tests.e2e.test_responses_sdk import weather_call
from tests.splits import every_split
from tests.unit.providers.helpers import chat, collect_all, make_adapter, reply

URL = "https://upstream.test/v1/responses"
STREAM = wire("openai/responses.sse")
TEXT = "Why did the scarecrow win an award?\n\nBecause he was outstanding in his field!"


async def run(body: bytes, cuts: list[bytes] | None = None, **request: object) -> tuple:
    adapter = make_adapter("openai", api="responses")
    with respx.mock:
        route = respx.post(URL).mock(side_effect=reply(cuts or [body], "text/event-stream"))
        messages = request.pop("messages", None)
        built = chat(**request)  # type: ignore[arg-type]
        if messages is not None:
            built = replace(built, messages=messages)
        deltas, outcome, error = await collect_all(adapter, built)
    sent = json.loads(route.calls[0].request.content) if route.calls else {}
    return deltas, outcome, error, sent


async def test_a_recorded_stream_is_its_text_at_every_cut() -> None:
    for cut in list(every_split(STREAM))[::97]:
        deltas, outcome, error, sent = await run(STREAM, cut)
        assert error is None and "".join(deltas) == TEXT  # type: ignore[arg-type]
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (11, 18)
        assert outcome.finish_reason == "stop"
    assert sent["input"] == [{"role": "user", "content": "hi"}]
    assert (sent["stream"], sent["store"], sent["model"]) == (True, False, "m-1")


async def test_calls_and_reasoning_become_parts() -> None:
    body = weather_call()
    reasoning = (
        b'event: response.reasoning_summary_text.delta\ndata: {"type":'
        b'"response.reasoning_summary_text.delta","delta":"hmm","sequence_number":0}\n\n'
    )
    deltas, outcome, error, _ = await run(reasoning + body)
    assert error is None
    assert deltas == [
        ReasoningDelta("hmm"),
        ToolCallStart(0, "call_weather_1", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallEnd(0),
    ]
    assert outcome.finish_reason == "tool_calls"


async def test_a_call_whose_arguments_come_only_whole() -> None:
    lines = [
        line for line in weather_call().split(b"\n\n") if b"function_call_arguments" not in line
    ]
    deltas, _, error, _ = await run(b"\n\n".join(lines))
    assert error is None
    assert deltas[1:] == [ToolCallDelta(0, '{"city":"Paris"}'), ToolCallEnd(0)]


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("openai/responses_failure.sse", UpstreamUnavailable),
        ("openai/responses_error.sse", UpstreamUnavailable),
    ],
)
async def test_failures_are_the_upstreams_errors(fixture: str, kind: type) -> None:
    deltas, _, error, _ = await run(wire(fixture))
    assert deltas == ["Hello"] and isinstance(error, kind)


async def test_a_stream_without_its_terminal_event_is_truncated() -> None:
    head = text_answer("x")
    head = head[: head.index(b"event: response.completed")]
    _, _, error, _ = await run(head)
    assert isinstance(error, UpstreamProtocolError)


async def test_an_incomplete_answer_ended_for_length() -> None:
    body = STREAM.replace(b'"type":"response.completed"', b'"type":"response.incomplete"')
    body = body.replace(b'"status":"completed","background"', b'"status":"incomplete","background"')
    _, outcome, _, _ = await run(body)
    assert outcome.finish_reason == "length"


async def test_the_request_in_responses_words() -> None:
    messages = (
        ChatMessage(
            "user", (Text("look"), Image("image/png", "AAAA"), Document("application/pdf", "JV"))
        ),
        ChatMessage(
            "assistant", (Reasoning("t", "sig", "anthropic"), Text("ok"), ToolCall("c1", "f", "{}"))
        ),
        ChatMessage("user", (ToolResult("c1", "done"),)),
    )
    _, _, _, sent = await run(
        text_answer("x"),
        messages=messages,
        system="sys",
        max_tokens=9,
        temperature=0.5,
        tools=(ToolSpec("f", "a tool", {"type": "object"}),),
        tool_choice=ToolChoice("tool", "f"),
        parallel_tool_calls=False,
        response_format=JsonFormat({"type": "object"}, "out", True),
        reasoning=ReasoningControl(effort="low"),
        openai_params={"user": "u", "seed": 1},
    )
    assert sent["instructions"] == "sys" and sent["max_output_tokens"] == 9
    assert sent["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                {
                    "type": "input_file",
                    "file_data": "data:application/pdf;base64,JV",
                    "filename": "file",
                },
            ],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ]
    assert sent["tools"] == [
        {"type": "function", "name": "f", "description": "a tool", "parameters": {"type": "object"}}
    ]
    assert sent["tool_choice"] == {"type": "function", "name": "f"}
    assert sent["parallel_tool_calls"] is False
    assert sent["text"]["format"] == {
        "type": "json_schema",
        "name": "out",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert sent["reasoning"] == {"effort": "low"} and sent["user"] == "u" and "seed" not in sent
    _, _, _, sent = await run(
        text_answer("x"),
        response_format=JsonFormat(),
        reasoning=ReasoningControl(enabled=False),
        tool_choice=ToolChoice("auto"),
    )
    assert sent["text"]["format"] == {"type": "json_object"}
    assert (sent["reasoning"], sent["tool_choice"]) == ({"effort": "none"}, "auto")


async def test_a_document_by_url_is_refused_and_a_filtered_answer_ends_so() -> None:
    message = ChatMessage("user", (Document("application/pdf", url="https://x/a.pdf"),))
    _, _, error, _ = await run(text_answer("x"), messages=(message,))
    assert error is not None and "inline" in error.message
    body = STREAM.replace(b'"type":"response.completed"', b'"type":"response.incomplete"')
    body = body.replace(
        b'"status":"completed","background"', b'"status":"incomplete","background"'
    ).replace(
        b'"incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"gpt-4o-mini-2024-07-18","output":[{',
        b'"incomplete_details":{"reason":"content_filter"},"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"gpt-4o-mini-2024-07-18","output":[{',
    )
    _, outcome, _, _ = await run(body)
    assert outcome.finish_reason == "content_filter"
