"""The Anthropic Messages dialect spoken to clients (SPEC §4.7).

Requests are validated like Anthropic validates them (unknown fields, a missing `max_tokens`
or an out-of-range `temperature` are 400 `invalid_request_error`); text content, as a string or
as text blocks, is relayed to every provider; Anthropic-only fields (`top_k`, `metadata`,
`service_tier`, `cache_control`, `output_config.effort`, ...) and the client's
`anthropic-version` / `anthropic-beta` headers reach Anthropic upstreams only; what a text
relay cannot honour (tools, images, documents, extended thinking, structured outputs) is a 400.

Streams are Anthropic's event sequence, with `event:` equal to `data.type`:

    message_start, content_block_start (one text block), content_block_delta (text_delta) …,
    content_block_stop, message_delta (stop_reason, cumulative usage), message_stop

with `ping` after `sse_keepalive_s` of silence, and `event: error` in Anthropic's envelope for a
failure after the first event (then nothing more: no `message_stop`). Each delta is one small
concatenation around pre-serialised bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

import orjson
from fastapi.sse import format_sse_event
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.dialects import Dialect, DialectRoute, ErrorReply, Finish, finish_of
from gateway.errors import BadRequest, GatewayError, UpstreamOverloaded
from gateway.models import Attempt, to_chat_request
from gateway.providers.base import ChatRequest, Usage
from gateway.relay import BuildRequest, Relay
from gateway.responses import Encoder
from gateway.schemas import MAX_TEXT, Message, ModelName, StreamRequest

__all__ = [
    "ANTHROPIC",
    "TOOLS_NOT_CARRIED",
    "AnthropicDialect",
    "AnthropicRoute",
    "MessagesEncoder",
    "MessagesRequest",
    "anthropic_stop_reason",
    "forwarded_headers",
    "message_body",
]

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ContentBlock(BaseModel):
    # Text blocks may carry `cache_control` or `citations`: accepted, and not relayed.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=64)]
    text: Text | None = None


def _text_of(content: str | list[ContentBlock], where: str) -> str:
    if isinstance(content, str):
        return content
    for block in content:
        if block.type != "text":
            raise BadRequest(
                f"{where}: {block.type!r} content blocks are not supported: "
                "the gateway relays text (text blocks only)"
            )
        if block.text is None:
            raise BadRequest(f"{where}: a text block needs `text`")
    # Separate blocks stay separate paragraphs once joined into one string.
    return "\n\n".join(block.text or "" for block in content)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant"]
    content: Text | Annotated[list[ContentBlock], Field(max_length=10_000)]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[str, StringConstraints(max_length=256)] | None = None


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: dict[str, Any] | None = None


# Fields only Anthropic understands, passed on to Anthropic upstreams only.
ANTHROPIC_ONLY = frozenset(
    {
        "top_k",
        "metadata",
        "service_tier",
        "inference_geo",
        "speed",
        "cache_control",
        "output_config",
    }
)


# The translated path carries text only so far (SPEC §4.9's native path carries the rest).
TOOLS_NOT_CARRIED = (
    "tools are not supported on this model: they reach only a model whose provider is of "
    "type 'anthropic' (the native path); to other providers the gateway relays text so far"
)


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=10_000)]
    max_tokens: int = Field(ge=1, le=10_000_000)
    system: Text | Annotated[list[ContentBlock], Field(max_length=10_000)] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    stop_sequences: Annotated[list[StopSequence], Field(max_length=16)] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: Annotated[str, StringConstraints(max_length=64)] | None = None
    speed: Literal["standard", "fast"] | None = None
    cache_control: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    # Accepted and ignored: they name the client's own account or earlier responses.
    diagnostics: dict[str, Any] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    # Accepted only in the forms that need nothing the gateway lacks.
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    mcp_servers: list[Any] | None = None
    container: Any | None = None

    def check_supported(self) -> None:
        if self.tools or self.mcp_servers or self.container is not None:
            raise BadRequest(TOOLS_NOT_CARRIED)
        if self.tool_choice is not None and self.tool_choice.get("type") not in ("auto", "none"):
            raise BadRequest("tool_choice is not supported: the gateway relays text")
        if self.thinking is not None and self.thinking.get("type") != "disabled":
            raise BadRequest("extended thinking is not supported: the gateway relays text")
        if self.output_config is not None and self.output_config.format is not None:
            raise BadRequest("structured outputs (output_config.format) are not supported")

    def to_stream_request(self) -> StreamRequest:
        # Built without validation: every field was validated above, and joined text blocks
        # may legitimately exceed a single field's length limit.
        messages = [
            Message.model_construct(role=m.role, content=_text_of(m.content, f"messages.{i}"))
            for i, m in enumerate(self.messages)
        ]
        system = None if self.system is None else _text_of(self.system, "system")
        return StreamRequest.model_construct(
            model=self.model,
            messages=messages,
            system=system or None,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_sequences or None,
        )

    def anthropic_params(self) -> dict[str, Any]:
        fields = self.model_dump(include=set(ANTHROPIC_ONLY), exclude_none=True)
        return {key: value for key, value in fields.items() if value != {}}

    def builder(self, headers: Mapping[str, str]) -> BuildRequest:
        """Each attempt's adapter request: the relayed fields plus what only Anthropic reads."""
        stream_request, params = self.to_stream_request(), self.anthropic_params()

        def build(attempt: Attempt) -> ChatRequest:
            request = to_chat_request(attempt, request=stream_request)
            if params or headers:
                request = replace(request, anthropic_params=params, anthropic_headers=headers)
            return request

        return build


# The client's headers that Anthropic upstreams receive; its credentials never are.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,1024}")


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    forwarded = {}
    for name in FORWARDED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if not _HEADER_VALUE.fullmatch(value):
            raise BadRequest(f"{name} must be printable ASCII, at most 1024 characters")
        forwarded[name] = value
    return forwarded


# ---- errors --------------------------------------------------------------------------------

_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "request_too_large": (413, "request_too_large"),
    "unknown_model": (404, "not_found_error"),
    "not_found": (404, "not_found_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "model_not_allowed": (403, "permission_error"),
    "rate_limited": (429, "rate_limit_error"),
    "budget_exceeded": (429, "rate_limit_error"),
    "upstream_rejected": (400, "invalid_request_error"),
    "upstream_rate_limited": (429, "rate_limit_error"),
    "upstream_timeout": (504, "timeout_error"),
    "unavailable": (529, "overloaded_error"),  # draining: another replica will answer
}
_API_ERROR = (500, "api_error")  # upstream auth, protocol and other failures, internal errors
_OVERLOADED = (529, "overloaded_error")
_DEFAULT_RETRY_AFTER = "1"


def anthropic_error(error: GatewayError) -> tuple[int, str]:
    """Anthropic's status and error type for a gateway error."""
    if isinstance(error, UpstreamOverloaded):
        return _OVERLOADED
    return _ERRORS.get(error.type, _API_ERROR)


def _envelope(error: GatewayError, kind: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": request_id,
    }


class AnthropicDialect(Dialect):
    """Anthropic's envelope and its status/type pairs; `retry-after` on every 429 and 529;
    the request id also in `request-id`, where the SDKs read it."""

    name = "anthropic"

    def error_reply(self, error: GatewayError, request_id: str) -> ErrorReply:
        status, kind = anthropic_error(error)
        headers = {**error.headers(), "request-id": request_id}
        if status in (429, 529):
            headers.setdefault("Retry-After", _DEFAULT_RETRY_AFTER)
        return ErrorReply(status, _envelope(error, kind, request_id), headers)


ANTHROPIC = AnthropicDialect()


class AnthropicRoute(DialectRoute):
    dialect = ANTHROPIC


# ---- stop reasons --------------------------------------------------------------------------

# Anthropic's own words pass through; every other provider's are mapped by what they mean.
_OWN_REASONS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
_REASONS = {
    Finish.END: "end_turn",
    Finish.STOP_SEQUENCE: "stop_sequence",
    Finish.LENGTH: "max_tokens",
    Finish.TOOL_CALL: "tool_use",
    Finish.FILTERED: "refusal",
}


def anthropic_stop_reason(reason: str | None) -> str:
    """Every provider's finish reason in Anthropic's vocabulary."""
    if reason in _OWN_REASONS:
        return reason
    return _REASONS[finish_of(reason)]


# ---- responses -----------------------------------------------------------------------------


def _event(data: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=orjson.dumps(data).decode(), event=data["type"])


def _output_tokens(usage: Usage | None, deltas: int) -> int:
    # Reported by the provider, else estimated as one token per delta (as the limits do).
    if usage is not None and usage.completion_tokens is not None:
        return usage.completion_tokens
    return deltas


def _message(relay: Relay, message_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"msg_{message_id}",
        "type": "message",
        "role": "assistant",
        "model": relay.model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
    }


_BLOCK_START = _event(
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
)
_BLOCK_STOP = _event({"type": "content_block_stop", "index": 0})
_MESSAGE_STOP = _event({"type": "message_stop"})
_PING = _event({"type": "ping"})
# A pre-built template: it writes exactly what _event() writes for a text delta (tested).
_DELTA_OPEN = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_DELTA_CLOSE = b"}}\n\n"


class MessagesEncoder(Encoder):
    """Anthropic's streaming events for one text block (SPEC §4.7)."""

    media_type = "text/event-stream"
    keepalive = _PING

    def __init__(self, relay: Relay, stream_id: str, request_id: str) -> None:
        super().__init__(relay, stream_id)
        self.request_id = request_id

    def opening(self) -> bytes:
        usage = self.relay.outcome.usage
        message = _message(self.relay, self.stream_id, [])
        # Input tokens when the upstream has said so by now (Anthropic's own message_start);
        # otherwise they follow in message_delta, which the SDKs read as the final count.
        prompt = usage.prompt_tokens if usage is not None else None
        message["usage"] = {"input_tokens": prompt or 0, "output_tokens": 0}
        return _event({"type": "message_start", "message": message}) + _BLOCK_START

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return _DELTA_OPEN + orjson.dumps(text) + _DELTA_CLOSE

    def closing(self) -> list[bytes]:
        outcome = self.relay.outcome
        usage: dict[str, int] = {"output_tokens": _output_tokens(outcome.usage, self.deltas)}
        if outcome.usage is not None and outcome.usage.prompt_tokens is not None:
            usage["input_tokens"] = outcome.usage.prompt_tokens
        stop = {"stop_reason": anthropic_stop_reason(outcome.finish_reason), "stop_sequence": None}
        end = _event({"type": "message_delta", "delta": stop, "usage": usage})
        return [_BLOCK_STOP + end + _MESSAGE_STOP]

    def error_frame(self, error: GatewayError) -> bytes:
        _, kind = anthropic_error(error)
        return _event(_envelope(error, kind, self.request_id))


def message_body(relay: Relay, message_id: str, text: str, deltas: int) -> dict[str, Any]:
    """A whole `message` object (stream: false)."""
    usage = relay.outcome.usage
    body = _message(relay, message_id, [{"type": "text", "text": text}])
    body["stop_reason"] = anthropic_stop_reason(relay.outcome.finish_reason)
    body["usage"] = {
        "input_tokens": (usage.prompt_tokens if usage is not None else None) or 0,
        "output_tokens": _output_tokens(usage, deltas),
    }
    return body
