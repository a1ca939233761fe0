"""Bedrock Converse: parts into its request, its stream's events into parts (tool calls and
reasoning included), from frames cut at every offset."""

from __future__ import annotations

import pytest

from gateway.errors import UpstreamProtocolError, UpstreamRejected
from gateway.parts import (
    Image,
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from gateway.providers._eventstream import EventStreamDecoder
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome
from gateway.providers.converse import ConverseEvents, converse_body
from tests.e2e.cloud_fakes import event
from tests.splits import every_split

WEATHER = ToolSpec("weather", "The weather in a city", {"type": "object"})


def request(*messages: ChatMessage, **fields: object) -> ChatRequest:
    return ChatRequest("amazon.nova-pro-v1:0", messages, **fields)  # type: ignore[arg-type]


def test_tools_history_and_results_map_to_converse_blocks() -> None:
    body = converse_body(
        request(
            ChatMessage("user", "weather in Paris?"),
            ChatMessage(
                "assistant",
                (
                    Reasoning("think", "sig-1", origin="bedrock"),
                    Reasoning("other's", "sig-2", origin="anthropic"),
                    ToolCall("t1", "weather", '{"city": "Paris"}'),
                ),
            ),
            ChatMessage(
                "user",
                (
                    ToolResult("t1", "18 C"),
                    ToolResult("t2", (Text("no"),), is_error=True),
                    Image("image/png", data="iVBOR"),
                ),
            ),
            system="be brief",
            max_tokens=50,
            stop=("END",),
            tools=(WEATHER,),
            tool_choice=ToolChoice("tool", "weather"),
        )
    )
    assert body["system"] == [{"text": "be brief"}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "stopSequences": ["END"]}
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "The weather in a city",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "weather"}},
    }
    assistant, results = body["messages"][1]["content"], body["messages"][2]["content"]
    assert assistant == [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig-1"}}},
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}},
    ]  # the other upstream's signature is left out
    assert results == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "18 C"}], "status": "success"}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "no"}], "status": "error"}},
        {"image": {"format": "png", "source": {"bytes": "iVBOR"}}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"auto": {}}), ("required", {"any": {}}), (None, None)],
)
def test_tool_choices(choice: str | None, expected: dict[str, object] | None) -> None:
    tool_choice = ToolChoice(choice) if choice else None  # type: ignore[arg-type]
    body = converse_body(
        request(ChatMessage("user", "x"), tools=(WEATHER,), tool_choice=tool_choice)
    )
    assert body["toolConfig"].get("toolChoice") == expected


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"tool_choice": ToolChoice("none"), "tools": (WEATHER,)}, "tool_choice none"),
        ({"messages": (ChatMessage("user", (Image(url="https://x/y.png"),)),)}, "inline bytes"),
        ({"messages": (ChatMessage("assistant", (ToolCall("t", "f", "{oops"),)),)}, "not JSON"),
    ],
)
def test_what_converse_cannot_say_is_a_400_naming_it(fields: dict[str, object], match: str) -> None:
    messages = fields.pop("messages", (ChatMessage("user", "x"),))
    with pytest.raises(UpstreamRejected, match=match):
        converse_body(request(*messages, **fields))  # type: ignore[arg-type]


STREAM = b"".join(
    [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Checking."}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event(
            "contentBlockStart",
            {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu1", "name": "weather"}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":'}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Paris"}'}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 2}),
        event(
            "contentBlockStart",
            {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tu2", "name": "time"}}},
        ),
        event("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
        event("contentBlockStop", {"contentBlockIndex": 3}),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 4, "delta": {"reasoningContent": {"redactedContent": "enc"}}},
        ),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 9, "outputTokens": 12}}),
    ]
)
EXPECTED = [
    ReasoningDelta("hm"),
    ReasoningEnd("s", "bedrock"),
    "Checking.",
    ToolCallStart(0, "tu1", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallEnd(0),
    ToolCallStart(1, "tu2", "time"),
    ToolCallDelta(1, "{}"),
    ToolCallEnd(1),
    ReasoningEnd("enc", "bedrock", redacted=True),
]


def run(pieces: list[bytes]) -> tuple[Batch, StreamOutcome, bool]:
    decoder, handle, outcome = EventStreamDecoder(1 << 20), ConverseEvents(), StreamOutcome()
    deltas: Batch = []
    ended = False
    for piece in pieces:
        for frame in decoder.feed(piece):
            ended = handle(frame, outcome, deltas) or ended
    return deltas, outcome, ended


def test_tool_calls_and_reasoning_from_frames_cut_anywhere() -> None:
    for pieces in every_split(STREAM):
        deltas, outcome, ended = run(pieces)
        assert deltas == EXPECTED
        assert ended and outcome.finish_reason == "tool_use"
        assert outcome.usage is not None and outcome.usage.completion_tokens == 12


def test_tool_input_for_no_call_is_a_protocol_error() -> None:
    stray = event(
        "contentBlockDelta", {"contentBlockIndex": 7, "delta": {"toolUse": {"input": "{"}}}
    )
    with pytest.raises(UpstreamProtocolError, match="no tool call"):
        run([stray])


def test_text_as_a_number_is_a_protocol_error() -> None:
    wrong = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": 5}})
    with pytest.raises(UpstreamProtocolError, match="a number"):
        run([wrong])
