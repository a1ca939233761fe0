"""The built-in fake provider: replays the story (or a script file) with no network and no keys.

It is an ordinary adapter, resolved like any other, and its scripted faults raise exactly what
real adapters raise, so every failure path of the relay can be exercised locally:

    [models.broken]
    provider = "fake"
    params = { fail_status = 503 }          # fail before the first chunk, as an upstream 503
    # params = { fail_after_chunks = 5 }    # break the stream after 5 chunks
    # params = { first_chunk_delay_ms = 2000 }
    # params = { fail_status = 429, retry_after_s = 5 }   # the failure carries Retry-After

Like a real model it honours `max_tokens`, one chunk counting as one token: the answer stops
there with finish reason "length".

It also plays a model that thinks and calls tools, so that frontends and agents can be built
against tool use with no keys (SPEC §4.9):

    [models.story-tools]
    provider = "fake"

    [models.story-tools.params]
    reasoning = "The user wants the weather; I will call the tool."
    tool_call = { name = "get_weather", arguments = { city = "Paris" } }

`reasoning` is streamed first, as reasoning (signed with origin `fake`, so that no real
upstream is ever sent its signature). With `tool_call`, a request that offers tools is
answered with that call (to the named tool, or the first one offered; `arguments` default to
`{}`), its arguments streamed in fragments, and finish reason `tool_calls`; the next request,
which carries the call's result, is answered with text that quotes the result, then the story.
`tool_call = {}` calls the first tool offered with no arguments.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.errors import UpstreamUnavailable, error_for_status
from gateway.parts import (
    ReasoningDelta,
    ReasoningEnd,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    text_of,
)
from gateway.providers._calls import new_call_id, result_text
from gateway.providers.base import (
    Batch,
    ChatRequest,
    Delta,
    ProviderSettings,
    StreamOutcome,
    Usage,
)

__all__ = ["FakeConfig", "FakeFaults", "FakeProvider", "load_story", "split_chunks"]

Chunking = Literal["line", "word", "char"]
Pace = Callable[[int], Awaitable[None]]


class FakeConfig(ProviderSettings):
    type: Literal["fake"] = "fake"
    chunk_delay_ms: float = Field(30, ge=0)
    chunking: Chunking = "word"
    script: Path | None = None

    @field_validator("script")
    @classmethod
    def _script_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"script file {str(value)!r} does not exist")
        return value


def load_story(script: Path | None) -> str:
    """Read the text once, at start-up (blocking I/O never runs per request)."""
    if script is None:
        return resources.files("gateway.providers").joinpath("story.txt").read_text("utf-8")
    with script.open(encoding="utf-8") as handle:
        return handle.read()


_WORD = re.compile(r"\S+\s*|\s+")


def split_chunks(text: str, chunking: Chunking) -> tuple[str, ...]:
    """Cut `text` into chunks whose concatenation is exactly `text`."""
    if chunking == "line":
        return tuple(text.splitlines(keepends=True))
    if chunking == "word":
        return tuple(_WORD.findall(text))
    return tuple(text)


class FakeProvider:
    def __init__(self, config: FakeConfig, pace: Pace | None = None) -> None:
        self.config = config
        self._chunks = split_chunks(load_story(config.script), config.chunking)
        self._pace = pace or self._sleep

    async def _sleep(self, index: int) -> None:
        # Always await, even at 0 ms: a loop with no await cannot be cancelled.
        await asyncio.sleep(self.config.chunk_delay_ms / 1000 if index else 0)

    async def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        faults = FakeFaults.model_validate(request.extra) if request.extra else NO_FAULTS
        outcome.model = request.model
        if faults.first_chunk_delay_ms:
            await asyncio.sleep(faults.first_chunk_delay_ms / 1000)
        if faults.fail_status is not None:
            error = error_for_status(
                faults.fail_status, f"scripted failure: HTTP {faults.fail_status}"
            )
            error.retry_after = faults.retry_after_s
            raise error
        script, finish = self._script(request, faults)
        limit = request.max_tokens if request.max_tokens is not None else len(script)
        chunks = script[:limit]
        for index, chunk in enumerate(chunks):
            await self._pace(index)
            if faults.fail_after_chunks is not None and index >= faults.fail_after_chunks:
                raise UpstreamUnavailable("scripted failure: the stream broke")
            yield [chunk]  # one chunk per "read": the fake paces them one by one
        outcome.finish_reason = "length" if len(chunks) < len(script) else finish
        outcome.usage = Usage(
            prompt_tokens=sum(len(text_of(m.content).split()) for m in request.messages),
            completion_tokens=len(chunks),
        )

    def _script(self, request: ChatRequest, faults: FakeFaults) -> tuple[Sequence[Delta], str]:
        """What this request is answered with, chunk by chunk, and its finish reason."""
        if faults.reasoning is None and faults.tool_call is None:
            return self._chunks, "stop"  # the story as it is (no copy per request)
        script: list[Delta] = []
        if faults.reasoning:
            thought = split_chunks(faults.reasoning, self.config.chunking)
            script += [ReasoningDelta(chunk) for chunk in thought]
            script.append(ReasoningEnd("fake-signature", "fake"))
        results = _last_results(request)
        call = faults.tool_call
        if call is not None and request.tools and not results:
            name = call.name or request.tools[0].name
            arguments = json.dumps(call.arguments, ensure_ascii=False)
            fragments = split_chunks(arguments, "char" if len(arguments) < 8 else "word")
            script.append(ToolCallStart(0, new_call_id(), name))
            script += [ToolCallDelta(0, fragment) for fragment in fragments]
            script.append(ToolCallEnd(0))
            return script, "tool_calls"
        if results:
            quoted = "; ".join(result_text(result) for result in results)
            script += split_chunks(f"The tool answered: {quoted}\n\n", self.config.chunking)
        script += self._chunks
        return script, "stop"

    async def aclose(self) -> None:
        return None


def _last_results(request: ChatRequest) -> list[ToolResult]:
    """The tool results of the conversation's last message (the turn after a call)."""
    if not request.messages or isinstance(request.messages[-1].content, str):
        return []
    return [part for part in request.messages[-1].content if isinstance(part, ToolResult)]


class FakeToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # the tool to call; None: the first one the request offers
    arguments: dict[str, Any] = Field(default_factory=dict)


class FakeFaults(BaseModel):
    """What a model entry's `params` may script of the fake provider: faults, reasoning and
    a tool call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    reasoning: str | None = None
    tool_call: FakeToolCall | None = None

    fail_status: int | None = Field(None, ge=400, le=599)
    fail_after_chunks: int | None = Field(None, ge=0)
    first_chunk_delay_ms: float = Field(0, ge=0)
    retry_after_s: float | None = Field(None, ge=0)  # sent as Retry-After with fail_status


NO_FAULTS = FakeFaults()
