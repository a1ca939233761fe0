"""The Anthropic Messages dialect spoken to clients (SPEC §4.7, §4.9).

Requests are read by `gateway.dialects.anthropic_in` (validated like Anthropic validates
them, then the neutral form of the translated path). Streams are Anthropic's event sequence,
with `event:` equal to `data.type`:

    message_start, then the content blocks (`gateway.dialects.anthropic_blocks`: thinking,
    text, each tool call, never interleaved), message_delta (stop_reason, cumulative usage),
    message_stop

with `ping` after `sse_keepalive_s` of silence, and `event: error` in Anthropic's envelope for a
failure after the first event (then nothing more: no `message_stop`). A text delta into the
open text block is one small concatenation around pre-serialised bytes. An answer with tool
calls stops with `tool_use`, also when its upstream says only `stop` (Gemini, Ollama).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.dialects import Dialect, DialectRoute, ErrorReply, Finish, finish_of
from gateway.dialects.anthropic_blocks import TEXT, Blocks, event, input_of
from gateway.dialects.anthropic_in import ANTHROPIC_ONLY, MessagesRequest
from gateway.errors import BadRequest, GatewayError, UpstreamOverloaded
from gateway.parts import AnswerBlock, Reasoning, StreamPart, ToolCall, client_signature
from gateway.providers.base import Usage
from gateway.relay import Relay
from gateway.responses import Encoder

__all__ = [
    "ANTHROPIC",
    "ANTHROPIC_ONLY",
    "AnthropicDialect",
    "AnthropicRoute",
    "MessagesEncoder",
    "MessagesRequest",
    "anthropic_stop_reason",
    "forwarded_headers",
    "message_body",
]

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


def anthropic_stop_reason(reason: str | None, called: bool = False) -> str:
    """Every provider's finish reason in Anthropic's vocabulary; `called`: the answer made
    tool calls, so a plain end means the model wants their results."""
    own = reason is not None and reason in _OWN_REASONS
    word = reason if own and reason is not None else _REASONS[finish_of(reason)]
    return "tool_use" if called and word == "end_turn" else word


# ---- responses -----------------------------------------------------------------------------


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


_MESSAGE_STOP = event({"type": "message_stop"})
_PING = event({"type": "ping"})
_DELTA_CLOSE = b"}}\n\n"


class MessagesEncoder(Encoder):
    """Anthropic's streaming events (SPEC §4.7): the blocks of `Blocks`, in order."""

    media_type = "text/event-stream"
    keepalive = _PING

    def __init__(self, relay: Relay, stream_id: str, request_id: str) -> None:
        super().__init__(relay, stream_id)
        self.request_id = request_id
        self.blocks = Blocks()

    def opening(self) -> bytes:
        usage = self.relay.outcome.usage
        message = _message(self.relay, self.stream_id, [])
        # Input tokens when the upstream has said so by now (Anthropic's own message_start);
        # otherwise they follow in message_delta, which the SDKs read as the final count.
        prompt = usage.prompt_tokens if usage is not None else None
        message["usage"] = {"input_tokens": prompt or 0, "output_tokens": 0}
        return event({"type": "message_start", "message": message})

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        blocks = self.blocks
        if blocks.open is TEXT:  # the hot path: one concatenation
            return blocks.text_head + orjson.dumps(text) + _DELTA_CLOSE
        return blocks.feed(text)

    def part(self, part: StreamPart) -> bytes:
        self.deltas += 1
        return self.blocks.feed(part)

    def ending(self) -> bytes:
        """The closing events, or the in-band error when the last call's input is broken."""
        try:
            return super().ending()
        except GatewayError as exc:  # raised by closing(): a call's input that is no object
            self.error = exc
            return self.error_frame(exc)

    def closing(self) -> list[bytes]:
        blocks = self.blocks.finish()
        outcome = self.relay.outcome
        usage: dict[str, int] = {"output_tokens": _output_tokens(outcome.usage, self.deltas)}
        if outcome.usage is not None and outcome.usage.prompt_tokens is not None:
            usage["input_tokens"] = outcome.usage.prompt_tokens
        reason = anthropic_stop_reason(outcome.finish_reason, self.blocks.calls > 0)
        stop = {"stop_reason": reason, "stop_sequence": None}
        end = event({"type": "message_delta", "delta": stop, "usage": usage})
        return [blocks + end + _MESSAGE_STOP]

    def error_frame(self, error: GatewayError) -> bytes:
        _, kind = anthropic_error(error)
        return event(_envelope(error, kind, self.request_id))


def content_of(blocks: list[AnswerBlock]) -> list[dict[str, Any]]:
    """A whole answer's content blocks; a call's `input` is its arguments parsed (a call whose
    arguments are no JSON object is the upstream's protocol error)."""
    content: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, ToolCall):
            arguments = input_of(block.name, block.arguments)
            call = {"type": "tool_use", "id": block.id, "name": block.name, "input": arguments}
            content.append(call)
        elif isinstance(block, Reasoning):
            content.extend(_thinking(block))
        else:
            content.append({"type": "text", "text": block.text})
    return content or [{"type": "text", "text": ""}]


def _thinking(block: Reasoning) -> list[dict[str, Any]]:
    signature = block.signature
    signature = "" if signature is None else client_signature(signature, block.origin, "anthropic")
    if block.redacted:
        return [{"type": "redacted_thinking", "data": signature}] if signature else []
    return [{"type": "thinking", "thinking": block.text, "signature": signature}]


def message_body(
    relay: Relay, message_id: str, blocks: list[AnswerBlock], deltas: int
) -> dict[str, Any]:
    """A whole `message` object (stream: false)."""
    usage = relay.outcome.usage
    body = _message(relay, message_id, content_of(blocks))
    called = any(isinstance(block, ToolCall) for block in blocks)
    body["stop_reason"] = anthropic_stop_reason(relay.outcome.finish_reason, called)
    body["usage"] = {
        "input_tokens": (usage.prompt_tokens if usage is not None else None) or 0,
        "output_tokens": _output_tokens(usage, deltas),
    }
    return body
