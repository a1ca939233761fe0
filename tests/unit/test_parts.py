"""The parts model on its own: a stream folded into a whole answer, parts as data, and the UI
message stream's frames for them (checked against `ai` 5.0.0's chunk shapes)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.ui_messages import UIParts
from gateway.parts import (
    Reasoning,
    ReasoningControl,
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    assemble,
    part_data,
    part_of,
)


def test_a_stream_assembles_into_its_blocks_in_order() -> None:
    deltas: list[str | StreamPart] = [
        ReasoningDelta("let me "),
        ReasoningDelta("think"),
        ReasoningEnd("sig-1", "anthropic"),
        "Sure, ",
        "writing.",
        ToolCallStart(0, "call_a", "write"),
        ToolCallStart(1, "call_b", "read"),
        ToolCallDelta(0, '{"path":'),
        ToolCallDelta(1, "{}"),
        ToolCallDelta(0, '"a"}'),
        ToolCallEnd(0),
        ToolCallEnd(1),
    ]
    assert assemble(deltas) == [
        Reasoning("let me think", "sig-1", "anthropic"),
        Text("Sure, writing."),
        ToolCall("call_a", "write", '{"path":"a"}'),
        ToolCall("call_b", "read", "{}"),
    ]


def test_reasoning_without_a_signature_is_kept_and_text_only_is_one_block() -> None:
    assert assemble([ReasoningDelta("hm"), "a", "b"]) == [Reasoning("hm"), Text("ab")]
    assert assemble(["a", "b"]) == [Text("ab")]
    assert assemble([]) == []


def test_a_fragment_for_a_call_never_started_is_ignored() -> None:
    assert assemble([ToolCallDelta(3, "{}"), ToolCallEnd(3)]) == []


parts = st.one_of(
    st.builds(ReasoningDelta, st.text()),
    st.builds(ReasoningEnd, st.none() | st.text(), st.none() | st.text(), st.booleans()),
    st.builds(ToolCallStart, st.integers(0, 64), st.text(), st.text()),
    st.builds(ToolCallDelta, st.integers(0, 64), st.text()),
    st.builds(ToolCallEnd, st.integers(0, 64)),
)


@given(parts)
def test_parts_round_trip_as_data(part: StreamPart) -> None:
    assert part_of(orjson.loads(orjson.dumps(part_data(part)))) == part


def chunks(frames: bytes) -> list[dict[str, object]]:
    assert frames.endswith(b"\n\n")
    return [orjson.loads(line[len(b"data: ") :]) for line in frames.split(b"\n\n") if line]


def test_ui_frames_for_reasoning_and_calls() -> None:
    ui = UIParts()
    out = [
        ui.frame(ReasoningDelta("a")),
        ui.frame(ReasoningDelta("b")),
        ui.frame(ReasoningEnd("sig", "anthropic")),
        ui.frame(ToolCallStart(0, "call_1", "write")),
        ui.frame(ToolCallDelta(0, '{"x":')),
        ui.frame(ToolCallDelta(0, "1}")),
        ui.frame(ToolCallEnd(0)),
        ui.frame(ToolCallStart(1, "call_2", "raw")),
        ui.frame(ToolCallDelta(1, "not json")),
        ui.frame(ToolCallEnd(1)),
    ]
    got = [chunk for frame in out for chunk in chunks(frame)]
    assert got == [
        {"type": "reasoning-start", "id": "reasoning-0"},
        {"type": "reasoning-delta", "id": "reasoning-0", "delta": "a"},
        {"type": "reasoning-delta", "id": "reasoning-0", "delta": "b"},
        {
            "type": "reasoning-end",
            "id": "reasoning-0",
            "providerMetadata": {
                "gateway": {"signature": "sig", "origin": "anthropic", "redacted": False}
            },
        },
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "write"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"x":'},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": "1}"},
        {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "write",
            "input": {"x": 1},
        },
        {"type": "tool-input-start", "toolCallId": "call_2", "toolName": "raw"},
        {"type": "tool-input-delta", "toolCallId": "call_2", "inputTextDelta": "not json"},
        {
            "type": "tool-input-available",
            "toolCallId": "call_2",
            "toolName": "raw",
            "input": "not json",
        },
    ]


def test_ui_reasoning_is_closed_by_a_call_and_unknown_calls_frame_nothing() -> None:
    ui = UIParts()
    ui.frame(ReasoningDelta("a"))
    got = chunks(ui.frame(ToolCallStart(0, "c", "t")))
    assert got[0] == {"type": "reasoning-end", "id": "reasoning-0"}
    assert ui.frame(ToolCallDelta(7, "x")) == b"" and ui.frame(ToolCallEnd(7)) == b""
    assert ui.frame(ReasoningEnd()) == b""  # nothing open, nothing to sign
    assert chunks(ui.frame(ReasoningEnd("s", "gemini")))[0]["type"] == "reasoning-start"


def test_a_traced_answer_shows_its_reasoning_and_calls_as_genai_parts() -> None:
    from gateway.tracing import _output_parts

    deltas: list[str | StreamPart] = [
        ReasoningDelta("hm"),
        ReasoningEnd("s", "anthropic"),
        "ok",
        ToolCallStart(0, "c1", "write"),
        ToolCallDelta(0, '{"a": 1}'),
        ToolCallEnd(0),
        ToolCallStart(1, "c2", "raw"),
        ToolCallDelta(1, "{broken"),
        ToolCallEnd(1),
    ]
    assert _output_parts(deltas) == [
        {"type": "reasoning", "content": "hm"},
        {"type": "text", "content": "ok"},
        {"type": "tool_call", "id": "c1", "name": "write", "arguments": {"a": 1}},
        {"type": "tool_call", "id": "c2", "name": "raw", "arguments": "{broken"},
    ]
    assert _output_parts([]) == [{"type": "text", "content": ""}]


@given(st.text(), st.sampled_from(["anthropic", "gemini", "openai", "fake"]))
def test_a_signature_comes_back_from_a_client_knowing_its_origin(
    signature: str, origin: str
) -> None:
    from gateway.parts import client_signature, signature_origin

    held = client_signature(signature, origin, "anthropic")
    assert signature_origin(held, "anthropic") == (signature, origin) or (
        origin != "anthropic" and not signature  # an empty foreign signature: nothing to keep
    )
    assert client_signature("abc", "anthropic", "anthropic") == "abc"  # its own: untouched


@pytest.mark.parametrize(
    ("control", "budget", "word"),
    [
        (ReasoningControl(effort="low"), 2048, "low"),
        (ReasoningControl(effort="xhigh"), 32768, "xhigh"),
        (ReasoningControl(budget_tokens=3000), 3000, "low"),
        (ReasoningControl(budget_tokens=4096), 4096, "medium"),
        (ReasoningControl(budget_tokens=16384), 16384, "high"),
        (ReasoningControl(effort="low", budget_tokens=9000), 9000, "low"),  # both: each its own
        (ReasoningControl(), None, None),
    ],
)
def test_one_table_turns_effort_words_and_budgets_into_each_other(
    control: ReasoningControl, budget: int | None, word: str | None
) -> None:
    assert (control.budget(), control.effort_word()) == (budget, word)
