"""The provider contract: what every adapter is and promises.

An adapter turns a normalised `ChatRequest` into its provider's streaming call and yields the
generated output in batches: each batch is a non-empty list of the deltas that one network
read of the upstream completed, in order, one per upstream delta, never an empty one. A delta is
text (`str`) or a part beyond text (`gateway.parts`: reasoning, tool call start / arguments /
end); an adapter whose upstream sends no parts yields only `str`.

    class Provider(Protocol):
        def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]
        async def aclose(self) -> None

Why batches (SPEC §4.1): deltas already in hand together leave in one write, each in its own
frame, so the per-delta cost (a generator hop, an ASGI `send`, a socket write) is paid once per
network read; a delta is never held back to wait for another, since a batch is yielded as
soon as its read has been decoded.

Obligations of `stream()` (an async generator, or a function returning one, as the HTTP
adapters return `_http.event_stream(...)`; either way nothing runs before the first `anext`):
- It raises only `gateway.errors.UpstreamError` subclasses, before or after its first yield;
  it does not care which side of the commit point it is on. Deltas that came before an error
  in the same read are yielded first: the text a client saw is all the upstream sent.
- It fills `outcome` (finish reason, usage, upstream model) when the upstream reports them, and
  ends normally only when the provider's terminal signal was seen: a stream that just stops is
  an `UpstreamProtocolError`, never a clean finish.
- Cleanup is structural: the upstream response lives in an `async with` inside the generator,
  so `aclose()` (or cancellation at any `await`) closes the upstream connection. No `yield` in
  `finally`/`except`, no swallowed `CancelledError`/`GeneratorExit`, no background tasks, and
  at least one `await` per loop iteration so that cancellation always lands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gateway.parts import (
    ContentPart,
    JsonFormat,
    ReasoningControl,
    StreamPart,
    ToolChoice,
    ToolSpec,
)

__all__ = [
    "Batch",
    "ChatMessage",
    "ChatRequest",
    "Delta",
    "Provider",
    "ProviderSettings",
    "StreamOutcome",
    "Usage",
]

Role = Literal["system", "user", "assistant"]
# A text delta (`str`, the hot case) or a part beyond text (`gateway.parts`).
Delta = str | StreamPart
Batch = list[Delta]  # the deltas of one network read, in order; never empty


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """`content`: text, or parts (`gateway.parts`: tool calls in assistant messages, tool
    results in user messages, images, documents, earlier reasoning)."""

    role: Role
    content: str | tuple[ContentPart, ...]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A request normalised for adapters: the upstream model name and merged parameters."""

    model: str
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    # The model entry's `params` that are not one of the fields above, passed through to the
    # provider's body as they are (and the fake provider's scripted faults).
    extra: Mapping[str, Any] = field(default_factory=dict)
    # OpenAI sampling parameters sent by /v1 clients (seed, penalties, reasoning_effort…):
    # only the OpenAI-compatible adapter understands them; the other dialects ignore them.
    openai_params: Mapping[str, Any] = field(default_factory=dict)
    # What /v1/messages clients send for Anthropic alone (top_k, metadata, service_tier) and
    # their anthropic-version / anthropic-beta headers: only the Anthropic adapter uses them.
    anthropic_params: Mapping[str, Any] = field(default_factory=dict)
    anthropic_headers: Mapping[str, str] = field(default_factory=dict)
    # Beyond text (SPEC §4.9), in no dialect's words: tools offered and how one is chosen,
    # structured output, and reasoning controls.
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: JsonFormat | None = None
    reasoning: ReasoningControl | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Of the prompt tokens, those read from the upstream's prompt cache (priced apart, §7);
    # only where the upstream reports them (OpenAI's prompt_tokens_details.cached_tokens).
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int | None]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class StreamOutcome:
    """Filled in by the adapter as the upstream reports it."""

    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


class Provider(Protocol):
    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]: ...

    async def aclose(self) -> None: ...


class ProviderSettings(BaseModel):
    """Settings every provider entry takes (SPEC §3, §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: float = Field(5.0, gt=0)
    first_token_timeout: float = Field(300.0, gt=0)  # reasoning models think for minutes
    idle_timeout: float = Field(60.0, gt=0)
    total_timeout: float | None = Field(None, gt=0)
    retries: int = Field(0, ge=0, le=10)
    retry_after_max_s: float = Field(2.0, ge=0)
    max_connections: int = Field(1000, ge=1)
