"""Stream parts framed in each client dialect (SPEC §4.9): parts in, frames out, cut anywhere.

The oracles are independent of the encoders: Anthropic's block rules checked event by event
(`anthropic_blocks`), and the OpenAI SDK's own stream accumulator for chat chunks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from gateway.dialects.anthropic import MessagesEncoder, message_body
from gateway.dialects.anthropic_blocks import Blocks
from gateway.dialects.openai import ChatCompletionEncoder, completion_body
from gateway.errors import UpstreamProtocolError
from gateway.models import Attempt
from gateway.parts import (
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    assemble,
)
from gateway.providers.base import StreamOutcome
from gateway.relay import Relay

Delta = str | StreamPart


async def _nothing() -> AsyncIterator[list[Delta]]:
    return
    yield


def relay(finish: str | None = "stop") -> Relay:
    attempt = Attempt("entry", None, "up")  # type: ignore[arg-type]
    return Relay(attempt, "p", _nothing(), StreamOutcome(finish_reason=finish))


def anthropic_events(frames: bytes) -> list[dict[str, Any]]:
    found = []
    for block in frames.decode().split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        found.append(data)
    return found


def anthropic_content(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks a client builds, checking Anthropic's rules as it goes: consecutive
    indexes from 0, one block open at a time, every delta to the open block, each block
    stopped before the next starts, and a tool_use's input JSON an object."""
    content: list[dict[str, Any]] = []
    open_index: int | None = None
    inputs: dict[int, list[str]] = {}
    for event in events:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None, "a block started while another was open"
            assert event["index"] == len(content)
            open_index = event["index"]
            content.append(dict(event["content_block"]))
            inputs[open_index] = []
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            block, delta = content[open_index], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                assert delta["type"] == "input_json_delta" and block["type"] == "tool_use"
                inputs[open_index].append(delta["partial_json"])
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            block = content[open_index]
            if block["type"] == "tool_use":
                text = "".join(inputs[open_index])
                block["input"] = orjson.loads(text) if text else {}
                assert isinstance(block["input"], dict)
            open_index = None
    assert open_index is None
    return content


def blocks_frames(deltas: Sequence[Delta]) -> bytes:
    blocks = Blocks()
    return b"".join(blocks.feed(delta) for delta in deltas) + blocks.finish()


CALLS = [
    ToolCallStart(0, "toolu_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallStart(1, "toolu_b", "clock"),  # an OpenAI-compatible server interleaves
    ToolCallDelta(1, "{}"),
    "late text",
    ToolCallDelta(0, '"Paris"}'),
    ToolCallEnd(0),
    ToolCallEnd(1),
]


def test_interleaved_calls_become_sequential_blocks_each_with_its_whole_input() -> None:
    deltas: list[Delta] = [
        ReasoningDelta("think"),
        ReasoningEnd("c2ln", "gemini"),
        "Let me check.",
        *CALLS,
    ]
    content = anthropic_content(anthropic_events(blocks_frames(deltas)))
    assert content == [
        {"type": "thinking", "thinking": "think", "signature": "gw1.gemini.c2ln"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}},
        {"type": "text", "text": "late text"},
    ]


def test_redacted_thinking_a_lone_signature_and_reasoning_never_closed() -> None:
    deltas: list[Delta] = [
        ReasoningEnd("ZGF0YQ==", "anthropic", redacted=True),
        ReasoningEnd("sig", "anthropic"),  # a signature with no text
        ReasoningEnd(None),  # nothing open, nothing to say
        ReasoningDelta("more"),
        "answer",  # closes the thinking block (no signature came)
    ]
    content = anthropic_content(anthropic_events(blocks_frames(deltas)))
    assert content == [
        {"type": "redacted_thinking", "data": "ZGF0YQ=="},
        {"type": "thinking", "thinking": "", "signature": "sig"},
        {"type": "thinking", "thinking": "more", "signature": ""},
        {"type": "text", "text": "answer"},
    ]


def test_calls_the_upstream_never_ended_are_ended_at_the_finish() -> None:
    deltas: list[Delta] = [
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, '{"x":1}'),
        ToolCallDelta(7, "stray"),  # a call never started: nothing
        ToolCallEnd(9),
    ]
    content = anthropic_content(anthropic_events(blocks_frames(deltas)))
    assert [block["input"] for block in content] == [{}, {"x": 1}]


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", '"text"', "not json"])
def test_a_call_whose_input_is_no_object_is_the_upstreams_protocol_error(arguments: str) -> None:
    blocks = Blocks()
    blocks.feed(ToolCallStart(0, "a", "f"))
    blocks.feed(ToolCallDelta(0, arguments))
    with pytest.raises(UpstreamProtocolError, match="'f'"):
        blocks.feed(ToolCallEnd(0))
    unended = Blocks()
    unended.feed(ToolCallStart(0, "a", "f"))
    unended.feed(ToolCallDelta(0, arguments))
    with pytest.raises(UpstreamProtocolError):
        unended.finish()


def test_the_encoder_ends_a_broken_call_with_the_in_band_error() -> None:
    encoder = MessagesEncoder(relay(), "s", "req-1")
    encoder.part(ToolCallStart(0, "a", "f"))
    encoder.part(ToolCallDelta(0, "{"))
    (event,) = anthropic_events(encoder.ending())
    assert event["type"] == "error" and event["error"]["type"] == "api_error"
    assert isinstance(encoder.error, UpstreamProtocolError)


def test_tool_calls_stop_with_tool_use_even_when_the_upstream_says_stop() -> None:
    encoder = MessagesEncoder(relay("STOP"), "s", "r")
    encoder.frames([ToolCallStart(0, "a", "f"), ToolCallDelta(0, "{}"), ToolCallEnd(0)])
    events = anthropic_events(encoder.ending())
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


# ---- Hypothesis: any well-formed interleaving, cut anywhere --------------------------------

fragments = st.lists(st.text(max_size=5), max_size=4)


@st.composite
def well_formed(draw: st.DrawFn) -> list[Delta]:
    """Text, reasoning and calls whose fragments interleave as an upstream may send them."""
    streams: list[list[Delta]] = []
    for index in range(draw(st.integers(0, 3))):
        value = draw(st.dictionaries(st.text(max_size=3), st.integers(-(2**53), 2**53), max_size=2))
        text = orjson.dumps(value).decode()
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=3)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        calls: list[Delta] = [ToolCallStart(index, f"call_{index}", f"tool{index}")]
        calls += [ToolCallDelta(index, piece) for piece in pieces]
        streams.append([*calls, ToolCallEnd(index)])
    streams.append(list(draw(st.lists(st.text(min_size=1, max_size=4), max_size=4))))
    thought = draw(st.lists(st.text(min_size=1, max_size=4), max_size=3))
    merged: list[Delta] = [ReasoningDelta(text) for text in thought]
    while any(streams):
        live = [stream for stream in streams if stream]
        merged.append(draw(st.sampled_from(live)).pop(0))
    return merged


def cut(deltas: list[Delta], points: list[int]) -> list[list[Delta]]:
    bounds = sorted({0, len(deltas), *(p % (len(deltas) + 1) for p in points)})
    return [deltas[a:b] for a, b in itertools.pairwise(bounds) if deltas[a:b]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deltas=well_formed(), points=st.lists(st.integers(0, 100), max_size=5))
def test_any_interleaving_cut_anywhere_keeps_anthropics_block_rules(
    deltas: list[Delta], points: list[int]
) -> None:
    encoder = MessagesEncoder(relay(), "s", "r")
    frames = encoder.opening() + b"".join(encoder.frames(batch) for batch in cut(deltas, points))
    events = anthropic_events(frames + encoder.ending())
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    content = anthropic_content(events)
    texts = "".join(b["text"] for b in content if b["type"] == "text")
    assert texts == "".join(d for d in deltas if isinstance(d, str))
    thought = "".join(b["thinking"] for b in content if b["type"] == "thinking")
    assert thought == "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    calls = [b for b in content if b["type"] == "tool_use"]
    expected = [b for b in assemble(deltas) if isinstance(b, ToolCall)]
    assert [(c["id"], c["name"], c["input"]) for c in calls] == [
        (b.id, b.name, orjson.loads(b.arguments)) for b in expected
    ]
    reason = events[-2]["delta"]["stop_reason"]
    assert reason == ("tool_use" if calls else "end_turn")


hostile = st.lists(
    st.one_of(
        st.text(max_size=3),
        st.builds(ReasoningDelta, st.text(max_size=3)),
        st.builds(ReasoningEnd, st.none() | st.text(max_size=3), st.sampled_from([None, "x"])),
        st.builds(ToolCallStart, st.integers(0, 3), st.text(max_size=3), st.text(max_size=3)),
        st.builds(ToolCallDelta, st.integers(0, 3), st.sampled_from(["{", "}", '"a"', ":1", ""])),
        st.builds(ToolCallEnd, st.integers(0, 3)),
    ),
    max_size=30,
)


def streamed(deltas: list[Delta], points: list[int], finish: str = "stop") -> Relay:
    """A primed relay whose first batch and later reads are `deltas` cut at `points`."""
    batches = cut(deltas, points)

    async def rest() -> AsyncIterator[list[Delta]]:
        for batch in batches[1:]:
            yield batch

    attempt = Attempt("entry", None, "up")  # type: ignore[arg-type]
    first = batches[0] if batches else []
    return Relay(attempt, first, rest(), StreamOutcome(finish_reason=finish))


def body_of(encoder: MessagesEncoder) -> bytes:
    async def run() -> bytes:
        chunks = [chunk async for chunk in encoder.body()]
        return b"".join(chunks) + encoder.ending()

    return asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(deltas=hostile, points=st.lists(st.integers(0, 100), max_size=4))
@example(deltas=[ToolCallStart(0, "a", "f"), ToolCallDelta(0, "{"), ToolCallEnd(0)], points=[])
@example(
    deltas=["x", ToolCallStart(0, "a", "f"), ToolCallDelta(0, "{"), ToolCallEnd(0)], points=[1]
)
def test_hostile_part_sequences_give_valid_blocks_or_the_protocol_error(
    deltas: list[Delta], points: list[int]
) -> None:
    encoder = MessagesEncoder(streamed(deltas, points), "s", "r")
    events = anthropic_events(body_of(encoder))
    assert events[0]["type"] == "message_start"
    if encoder.error is not None:  # the in-band error, last, and nothing after it
        assert isinstance(encoder.error, UpstreamProtocolError)
        assert events[-1]["type"] == "error"
        assert "message_stop" not in [event["type"] for event in events]
        return
    assert events[-1]["type"] == "message_stop"
    anthropic_content(events)


# ---- OpenAI chat chunks --------------------------------------------------------------------


def openai_chunks(frames: bytes) -> list[dict[str, Any]]:
    events = frames.decode().split("\n\n")[:-1]
    assert events[-1] == "data: [DONE]"
    return [orjson.loads(event.removeprefix("data: ")) for event in events[:-1]]


def openai_message(chunks: list[dict[str, Any]]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion().choices[0]


def openai_frames(deltas: Sequence[Delta], finish: str = "stop") -> bytes:
    encoder = ChatCompletionEncoder(relay(finish), "s", include_usage=True)
    return encoder.opening() + encoder.frames(list(deltas)) + encoder.ending()


def test_openai_tool_calls_as_the_sdk_reads_them() -> None:
    deltas: list[Delta] = [ReasoningDelta("think"), ReasoningEnd("sig", "anthropic"), *CALLS]
    chunks = openai_chunks(openai_frames(deltas))
    reasoning = [c["choices"][0]["delta"].get("reasoning_content") for c in chunks if c["choices"]]
    assert "think" in reasoning
    choice = openai_message(chunks)
    assert choice.finish_reason == "tool_calls"  # the upstream said stop: it made calls
    assert choice.message.content == "late text"
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    assert calls == [("toolu_a", "weather", '{"city":"Paris"}'), ("toolu_b", "clock", "{}")]
    assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["choices"] == []


def test_openai_ignores_parts_of_calls_it_never_started_and_second_starts() -> None:
    deltas: list[Delta] = [
        ToolCallDelta(5, "stray"),
        ToolCallStart(3, "a", "f"),  # an odd upstream index: the client sees 0
        ToolCallStart(3, "b", "g"),
        ToolCallDelta(3, "{}"),
        ToolCallEnd(3),
    ]
    chunks = openai_chunks(openai_frames(deltas, finish="end_turn"))
    indexes = [
        call["index"]
        for chunk in chunks
        if chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert indexes == [0, 0]
    choice = openai_message(chunks)
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.arguments) for c in choice.message.tool_calls] == [("a", "{}")]


@settings(max_examples=200, deadline=None)
@given(deltas=well_formed(), points=st.lists(st.integers(0, 100), max_size=5))
def test_openai_chunks_cut_anywhere_read_back_as_the_answer(
    deltas: list[Delta], points: list[int]
) -> None:
    encoder = ChatCompletionEncoder(relay(), "s")
    frames = encoder.opening() + b"".join(encoder.frames(b) for b in cut(deltas, points))
    choice = openai_message(openai_chunks(frames + encoder.ending()))
    assert choice.message.content == "".join(d for d in deltas if isinstance(d, str))
    expected = [b for b in assemble(deltas) if isinstance(b, ToolCall)]
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        (b.id, b.name, b.arguments) for b in expected
    ]


# ---- whole answers (stream: false) ---------------------------------------------------------

ANSWER = [
    Reasoning("think", "sig", "anthropic"),
    Reasoning("", "ZGF0YQ==", "openai", redacted=True),
    Text("Checking."),
    ToolCall("a", "weather", '{"city":"Paris"}'),
    ToolCall("b", "clock", ""),
]


def test_a_whole_openai_answer_with_calls_and_reasoning() -> None:
    body = completion_body(relay("STOP"), "s", ANSWER)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking.",
        "refusal": None,
        "reasoning_content": "think",
        "tool_calls": [
            {
                "id": "a",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "b", "type": "function", "function": {"name": "clock", "arguments": ""}},
        ],
    }
    only_calls = completion_body(relay(), "s", [ToolCall("a", "f", "{}")])["choices"][0]
    assert only_calls["message"]["content"] is None


def test_a_whole_anthropic_answer_parses_each_calls_input() -> None:
    body = message_body(relay("stop"), "s", ANSWER, deltas=5)
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [
        {"type": "thinking", "thinking": "think", "signature": "sig"},
        {"type": "redacted_thinking", "data": "gw1.openai.ZGF0YQ=="},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "b", "name": "clock", "input": {}},
    ]
    unsigned = message_body(relay(), "s", [Reasoning("hm")], 1)["content"]
    assert unsigned == [{"type": "thinking", "thinking": "hm", "signature": ""}]
    nothing = message_body(relay(), "s", [Reasoning("", None, redacted=True)], 1)["content"]
    assert nothing == [{"type": "text", "text": ""}]


def test_a_whole_anthropic_answer_with_a_broken_call_is_the_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="'f'"):
        message_body(relay(), "s", [ToolCall("a", "f", "{")], 1)


def test_a_gemini_signature_rides_in_the_openai_call_id_it_signed() -> None:
    deltas: list[Delta] = [
        ReasoningEnd("c2ln", "gemini"),
        ToolCallStart(0, "call_a", "f"),
        ToolCallDelta(0, "{}"),
        ReasoningEnd("EqQB", "anthropic"),  # needs its thinking text: no slot, dropped
        ToolCallStart(1, "call_b", "g"),
        ReasoningEnd("c2ln", "gemini", redacted=True),
        ToolCallStart(2, "call_c", "h"),
        ReasoningEnd("dGV4dA==", "gemini"),  # a text part's signature, not the next call's
        "text",
        ToolCallStart(3, "call_d", "i"),
    ]
    calls = openai_message(openai_chunks(openai_frames(deltas))).message.tool_calls
    ids = [call.id for call in calls]
    assert ids == ["call_a~gw1.gemini.c2ln", "call_b", "call_c", "call_d"]
    blocks = [
        Reasoning("", "c2ln", "gemini"),
        ToolCall("call_a", "f", "{}"),
        ToolCall("call_b", "g", "{}"),
        Reasoning("", "dGV4dA==", "gemini"),
        Text("text"),
        ToolCall("call_c", "h", "{}"),
    ]
    whole = completion_body(relay(), "s", blocks)["choices"][0]["message"]["tool_calls"]
    assert [call["id"] for call in whole] == ["call_a~gw1.gemini.c2ln", "call_b", "call_c"]
