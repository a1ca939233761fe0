"""Parts: everything beyond text, in no dialect's words (SPEC §4.9, the translated path).

A leaf module: the upstream adapters (`gateway.providers`) and the client dialects
(`gateway.dialects`, `gateway.api`) both import it, and it imports nothing of theirs. Each
mapping is written once, between a dialect and these types: an adapter reads its upstream into
stream parts and writes requests from content parts; a client dialect reads requests into
content parts and writes stream parts in its own framing.

**In a stream** (what an adapter yields, in `Batch`es): text stays a plain `str`, so the text
relay's hot path is unchanged; everything else is one of the `StreamPart` classes below. The
order is the model's: a call's `ToolCallStart` comes before its `ToolCallDelta`s and its
`ToolCallEnd`; reasoning deltas come before the signature that closes them. A call that
arrives whole (Gemini, Ollama) is a start, one delta and an end. Finish reason and usage stay
on `StreamOutcome`.

**In a request**: a `ChatMessage`'s content is a `str` (text only, the common case) or a tuple
of `ContentPart`s, in the Anthropic-like neutral form: an assistant's tool calls are
`ToolCall` parts of its message; tool results are `ToolResult` parts of the next user message
(adapters whose upstream wants a `tool` role message per result split them out).

Opaque data (Anthropic thinking signatures, Gemini thought signatures, OpenAI encrypted
reasoning) carries its `origin`, the provider kind that made it, so that it goes back only to
that kind of upstream (SPEC §4.9).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EFFORT_BUDGET",
    "AnswerBlock",
    "ContentPart",
    "Document",
    "Image",
    "JsonFormat",
    "Reasoning",
    "ReasoningControl",
    "ReasoningDelta",
    "ReasoningEnd",
    "StreamPart",
    "Text",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolChoice",
    "ToolResult",
    "ToolSpec",
    "assemble",
    "client_signature",
    "is_part",
    "part_data",
    "part_of",
    "signature_origin",
    "text_of",
]


# --- In a stream -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A fragment of the model's visible reasoning (thinking, `reasoning_content`, thoughts)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningEnd:
    """Closes a reasoning block: its opaque signature (or, `redacted`, its encrypted whole),
    which must go back unchanged to an upstream of the `origin` kind in later turns."""

    signature: str | None = None
    origin: str | None = None  # the provider kind that made the signature ("anthropic", ...)
    redacted: bool = False  # Anthropic's `redacted_thinking`: `signature` is its `data`


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call begins: `index` is its place among this answer's calls (0-based)."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a call's arguments; the fragments concatenated are the arguments' JSON."""

    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """The upstream ended the call (never inferred from its arguments parsing as JSON)."""

    index: int


StreamPart = ReasoningDelta | ReasoningEnd | ToolCallStart | ToolCallDelta | ToolCallEnd
STREAM_PARTS = (ReasoningDelta, ReasoningEnd, ToolCallStart, ToolCallDelta, ToolCallEnd)


def is_part(delta: object) -> bool:
    """A stream delta that is not text (text deltas are plain `str`)."""
    return isinstance(delta, STREAM_PARTS)


# --- In a request ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """Inline bytes (`data`, base64, with `media_type`) or an `https` URL the upstream fetches
    itself (never the gateway)."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A document (PDF, plain text): inline base64 `data` or an upstream-fetched `url`."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning from an earlier assistant turn, with its signature for the upstream that
    made it (`origin`); `redacted`: `signature` is the encrypted whole, `text` is empty."""

    text: str
    signature: str | None = None
    origin: str | None = None
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made in an earlier assistant turn; `arguments` is its JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of the call `call_id`: text, or text and image parts."""

    call_id: str
    content: str | tuple[Text | Image, ...]
    is_error: bool = False
    name: str | None = None  # the called tool's name, where the client's dialect says it


ContentPart = Text | Image | Document | Reasoning | ToolCall | ToolResult


def text_of(content: str | tuple[ContentPart, ...]) -> str:
    """The text of a message's content (its `Text` parts, joined)."""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, Text))


# --- Request controls --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # a JSON Schema (an object)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`, `none`, `required` (some tool), or `tool` (the one `name`)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """Structured output: any JSON object (`schema` None), or one matching `schema`."""

    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ReasoningControl:
    """How much the model should think: an effort word (`minimal` … `high`), a token budget,
    or off (`enabled` False)."""

    enabled: bool = True
    effort: str | None = None
    budget_tokens: int | None = None

    def budget(self) -> int | None:
        """The thinking budget: its own, else its effort word's (None: neither given)."""
        if self.budget_tokens is not None:
            return self.budget_tokens
        return EFFORT_BUDGET.get(self.effort) if self.effort is not None else None

    def effort_word(self) -> str | None:
        """The effort word: its own, else the one nearest its budget (None: neither given)."""
        if self.effort is not None:
            return self.effort
        if self.budget_tokens is None:
            return None
        if self.budget_tokens < 4096:  # between the words' budgets, the boundaries
            return "low"
        return "medium" if self.budget_tokens < 16384 else "high"


# Thinking budgets for an effort word (Anthropic and Gemini take budgets; OpenAI, words).
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}


# --- Signatures in a client's hands ----------------------------------------------------

_TAG = "gw1."  # a signature from another upstream, in a dialect whose slot is for its own


def client_signature(signature: str, origin: str | None, dialect_origin: str) -> str:
    """A signature as a client of a dialect with a signature slot holds it (an Anthropic
    client's thinking `signature`): as it is when it came from that dialect's own upstream,
    else tagged with its origin (`gw1.<origin>.<signature>`), so that it comes back knowing
    where it may go (SPEC §4.9: opaque data goes back only to the upstream that made it)."""
    if origin == dialect_origin or origin is None:
        return signature
    return f"{_TAG}{origin}.{signature}"


def signature_origin(signature: str, dialect_origin: str) -> tuple[str, str]:
    """The signature a client sent back, and where it came from (`client_signature`'s
    inverse: an untagged one is the dialect's own upstream's)."""
    if signature.startswith(_TAG):
        origin, _, rest = signature[len(_TAG) :].partition(".")
        if origin and rest:
            return rest, origin
    return signature, dialect_origin


# --- As data (resumable logs, Redis) -----------------------------------------------------

_KIND_OF: dict[type, str] = {
    ReasoningDelta: "reasoning",
    ReasoningEnd: "reasoning-end",
    ToolCallStart: "tool-start",
    ToolCallDelta: "tool-delta",
    ToolCallEnd: "tool-end",
}
_CLASS_OF: dict[str, type] = {kind: cls for cls, kind in _KIND_OF.items()}


def part_data(part: StreamPart) -> dict[str, Any]:
    """A stream part as a JSON-able dict (`part_of` reads it back)."""
    data = {name: getattr(part, name) for name in part.__slots__}
    data["kind"] = _KIND_OF[type(part)]
    return data


def part_of(data: dict[str, Any]) -> StreamPart:
    fields = dict(data)
    part: StreamPart = _CLASS_OF[fields.pop("kind")](**fields)
    return part


# --- A whole answer ----------------------------------------------------------------------

AnswerBlock = Text | Reasoning | ToolCall


def assemble(deltas: Iterable[str | StreamPart]) -> list[AnswerBlock]:
    """A stream's deltas as the whole answer's blocks, in order (for `stream: false` and for
    stored responses): consecutive text joined, each reasoning block with its signature, each
    tool call with its arguments joined (calls interleaved by index are kept apart)."""
    blocks: list[AnswerBlock] = []
    calls: dict[int, int] = {}  # a call's index in the answer -> its place in `blocks`
    text: list[str] = []
    reasoning: list[str] | None = None

    def flush_text() -> None:
        if text:
            blocks.append(Text("".join(text)))
            text.clear()

    for delta in deltas:
        if isinstance(delta, str):
            text.append(delta)
        elif isinstance(delta, ReasoningDelta):
            flush_text()
            reasoning = [] if reasoning is None else reasoning
            reasoning.append(delta.text)
        elif isinstance(delta, ReasoningEnd):
            flush_text()
            thought = "".join(reasoning or ())
            blocks.append(Reasoning(thought, delta.signature, delta.origin, delta.redacted))
            reasoning = None
        else:
            if reasoning is not None:  # reasoning the upstream never closed with a signature
                blocks.append(Reasoning("".join(reasoning)))
                reasoning = None
            flush_text()
            _call(blocks, calls, delta)
    if reasoning is not None:
        blocks.append(Reasoning("".join(reasoning)))
    flush_text()
    return blocks


def _call(
    blocks: list[AnswerBlock],
    calls: dict[int, int],
    part: ToolCallStart | ToolCallDelta | ToolCallEnd,
) -> None:
    if isinstance(part, ToolCallStart):
        calls[part.index] = len(blocks)
        blocks.append(ToolCall(part.id, part.name, ""))
    elif isinstance(part, ToolCallDelta) and (place := calls.get(part.index)) is not None:
        call = blocks[place]
        assert isinstance(call, ToolCall)
        blocks[place] = ToolCall(call.id, call.name, call.arguments + part.arguments)
