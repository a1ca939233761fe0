from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from gateway.errors import UpstreamRateLimited, UpstreamUnavailable
from gateway.providers.base import ChatMessage, ChatRequest, StreamOutcome
from gateway.providers.fake import FakeConfig, FakeProvider, load_story, split_chunks
from tests.ci import in_ci

STORY = (Path(__file__).parents[3] / "gateway" / "providers" / "story.txt").read_text()


def request(**extra: object) -> ChatRequest:
    return ChatRequest(model="story", messages=(ChatMessage("user", "hi there"),), extra=extra)


# SHA-256 of shared/reference/story.txt, the text SPEC §1 names: the check holds in a fresh
# clone too, where the reference copy may not be beside the repository.
REFERENCE_STORY_SHA256 = "e22b8f83bae133379fc0174bacb4dd137a014d0fd096ab0e5d8a055b4523e8b5"
REFERENCE_COPY = Path(__file__).parents[4] / "shared" / "reference" / "story.txt"


def test_fake_story_is_the_reference_text() -> None:
    story = load_story(None)
    assert hashlib.sha256(story.encode()).hexdigest() == REFERENCE_STORY_SHA256
    assert story.startswith("Rick: (stumbles in drunkenly")


def test_reference_digest_matches_the_reference_copy() -> None:
    # CI runs in a fresh clone with the read-only shared/ beside it (../shared).
    if not REFERENCE_COPY.is_file():
        if in_ci():
            pytest.fail(f"the reference copy {REFERENCE_COPY} is missing", pytrace=False)
        pytest.skip(f"no reference copy at {REFERENCE_COPY} (only CI must have one)")
    digest = hashlib.sha256(REFERENCE_COPY.read_bytes()).hexdigest()
    assert digest == REFERENCE_STORY_SHA256


@pytest.mark.parametrize("chunking", ["line", "word", "char"])
def test_fake_chunks_concatenate_to_the_exact_text(chunking: str) -> None:
    chunks = split_chunks(STORY, chunking)  # type: ignore[arg-type]
    assert "".join(chunks) == STORY
    assert all(chunks)
    expected = {"line": 7, "char": len(STORY)}.get(chunking)
    if expected:
        assert len(chunks) == expected


def test_fake_word_chunking_keeps_leading_whitespace() -> None:
    assert "".join(split_chunks("  a b\n\tc  ", "word")) == "  a b\n\tc  "


async def test_fake_streams_the_story_and_reports_outcome() -> None:
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0))
    outcome = StreamOutcome()
    text = "".join([d async for batch in provider.stream(request(), outcome) for d in batch])
    assert text == STORY
    assert outcome.finish_reason == "stop"
    assert outcome.usage is not None and outcome.usage.prompt_tokens == 2


async def test_fake_script_file_replaces_the_story(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("one two\nthree")
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0, chunking="line", script=script))
    assert [b async for b in provider.stream(request(), StreamOutcome())] == [
        ["one two\n"],
        ["three"],
    ]


async def test_fake_fail_status_raises_the_real_adapters_error() -> None:
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0))
    with pytest.raises(UpstreamRateLimited):
        await anext(provider.stream(request(fail_status=429), StreamOutcome()))


async def test_fake_fail_after_chunks_breaks_mid_stream() -> None:
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0))
    got: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for delta in provider.stream(request(fail_after_chunks=3), StreamOutcome()):
            got.append(delta)
    assert len(got) == 3


async def test_fake_with_zero_delay_can_still_be_cancelled() -> None:
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0, chunking="char"))
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(request(), StreamOutcome()):
            started.set()

    task = asyncio.ensure_future(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_fake_pace_hook_controls_release() -> None:
    released: list[int] = []

    async def pace(index: int) -> None:
        released.append(index)
        await asyncio.sleep(0)

    provider = FakeProvider(FakeConfig(chunking="line"), pace=pace)
    chunks = [d async for batch in provider.stream(request(), StreamOutcome()) for d in batch]
    assert released == list(range(len(chunks)))


async def run_fake(req: ChatRequest) -> tuple[list[object], StreamOutcome]:
    provider = FakeProvider(FakeConfig(chunk_delay_ms=0))
    outcome = StreamOutcome()
    deltas: list[object] = []
    async for batch in provider.stream(req, outcome):
        deltas += batch
    return deltas, outcome


async def test_fake_thinks_then_calls_the_scripted_tool_then_answers_its_result() -> None:
    from gateway.parts import (
        ReasoningDelta,
        ReasoningEnd,
        Text,
        ToolCall,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
        ToolResult,
        ToolSpec,
        assemble,
    )

    script = {
        "reasoning": "I will check.",
        "tool_call": {"name": "weather", "arguments": {"city": "Paris"}},
    }
    tools = (ToolSpec("clock"), ToolSpec("weather"))
    first = ChatRequest(
        model="story", messages=(ChatMessage("user", "weather?"),), tools=tools, extra=script
    )
    deltas, outcome = await run_fake(first)
    assert outcome.finish_reason == "tool_calls"
    assert [d for d in deltas if isinstance(d, ReasoningDelta)] == [
        ReasoningDelta("I "),
        ReasoningDelta("will "),
        ReasoningDelta("check."),
    ]
    assert ReasoningEnd("fake-signature", "fake") in deltas
    start = next(d for d in deltas if isinstance(d, ToolCallStart))
    assert start.name == "weather" and isinstance(deltas[-1], ToolCallEnd)
    arguments = "".join(d.arguments for d in deltas if isinstance(d, ToolCallDelta))
    assert arguments == '{"city": "Paris"}'
    assert not any(isinstance(d, str) for d in deltas)  # an answer of only a call

    call = ToolCall(start.id, "weather", arguments)
    history = (
        ChatMessage("user", "weather?"),
        ChatMessage("assistant", (call,)),
        ChatMessage("user", (ToolResult(start.id, "18 °C"),)),
    )
    deltas, outcome = await run_fake(
        ChatRequest(model="story", messages=history, tools=tools, extra=script)
    )
    assert outcome.finish_reason == "stop"
    blocks = assemble(deltas)  # type: ignore[arg-type]
    assert isinstance(blocks[-1], Text)
    assert blocks[-1].text.startswith("The tool answered: 18 °C\n\n" + STORY[:20])


async def test_fake_calls_the_first_tool_offered_and_none_when_none_is() -> None:
    from gateway.parts import ToolCallStart, ToolSpec

    req = ChatRequest(
        model="story",
        messages=(ChatMessage("user", "x"),),
        tools=(ToolSpec("clock"),),
        extra={"tool_call": {}},
    )
    deltas, _ = await run_fake(req)
    assert [d.name for d in deltas if isinstance(d, ToolCallStart)] == ["clock"]
    deltas, outcome = await run_fake(request(tool_call={}))  # no tools offered: just the story
    assert (
        "".join(d for d in deltas if isinstance(d, str)) == STORY
        and outcome.finish_reason == "stop"
    )
