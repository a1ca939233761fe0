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
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.errors import UpstreamUnavailable, error_for_status
from gateway.parts import text_of
from gateway.providers.base import Batch, ChatRequest, ProviderSettings, StreamOutcome, Usage

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
        limit = request.max_tokens if request.max_tokens is not None else len(self._chunks)
        chunks = self._chunks[:limit]
        for index, chunk in enumerate(chunks):
            await self._pace(index)
            if faults.fail_after_chunks is not None and index >= faults.fail_after_chunks:
                raise UpstreamUnavailable("scripted failure: the stream broke")
            yield [chunk]  # one chunk per "read": the fake paces them one by one
        outcome.finish_reason = "length" if len(chunks) < len(self._chunks) else "stop"
        outcome.usage = Usage(
            prompt_tokens=sum(len(text_of(m.content).split()) for m in request.messages),
            completion_tokens=len(chunks),
        )

    async def aclose(self) -> None:
        return None


class FakeFaults(BaseModel):
    """The scripted faults a model entry's `params` may ask of the fake provider."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    fail_status: int | None = Field(None, ge=400, le=599)
    fail_after_chunks: int | None = Field(None, ge=0)
    first_chunk_delay_ms: float = Field(0, ge=0)
    retry_after_s: float | None = Field(None, ge=0)  # sent as Retry-After with fail_status


NO_FAULTS = FakeFaults()
