"""The OpenAI Chat Completions dialect spoken to clients (SPEC §4.3, §4.9).

Requests are read by `gateway.dialects.openai_in` (strict validation, then the neutral form of
the translated path). Streaming answers are `chat.completion.chunk` events built from
pre-serialised byte templates (one small concatenation per text delta), then `data: [DONE]`;
parts beyond text are framed as OpenAI frames them: reasoning as `delta.reasoning_content`
(what DeepSeek, vLLM and llama.cpp send), each tool call as a first `delta.tool_calls` entry
with `index`, `id`, `type` and `function.name`, then `function.arguments` fragments. The
`index` is the call's place among this answer's calls. An answer with tool calls finishes with
`tool_calls`, also when its upstream says only `stop` (Gemini and Ollama do).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.dialects import Dialect, DialectRoute, ErrorReply, Finish, finish_of
from gateway.dialects.openai_in import ChatCompletionRequest
from gateway.dialects.translated import SIGNED_ORIGINS, signed_call_id
from gateway.errors import GatewayError
from gateway.parts import (
    AnswerBlock,
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
)
from gateway.providers.base import Usage
from gateway.relay import Relay
from gateway.responses import Encoder

__all__ = [
    "OPENAI",
    "ChatCompletionEncoder",
    "ChatCompletionRequest",
    "OpenAIDialect",
    "OpenAIRoute",
    "completion_body",
    "openai_finish_reason",
]

# OpenAI's own words pass through; every other provider's are mapped by what they mean.
_OWN_REASONS = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter"})
_REASONS = {
    Finish.END: "stop",
    Finish.STOP_SEQUENCE: "stop",
    Finish.LENGTH: "length",
    Finish.TOOL_CALL: "tool_calls",
    Finish.FILTERED: "content_filter",
}


def openai_finish_reason(reason: str | None, called: bool = False) -> str:
    """Every provider's finish reason in OpenAI's vocabulary; `called`: the answer made tool
    calls, so a plain end means the model wants their results."""
    own = reason is not None and reason in _OWN_REASONS
    word = reason if own and reason is not None else _REASONS[finish_of(reason)]
    return "tool_calls" if called and word == "stop" else word


def _usage(usage: Usage | None) -> dict[str, int | None] | None:
    return usage.as_dict() if usage is not None else None


def _error(error: GatewayError) -> dict[str, Any]:
    code = error.code or error.type
    return {"message": error.message, "type": error.type, "param": error.param, "code": code}


class OpenAIDialect(Dialect):
    """OpenAI's envelope `{"error": {message, type, param, code}}`, the gateway's statuses."""

    def error_reply(self, error: GatewayError, request_id: str) -> ErrorReply:
        return ErrorReply(error.status, {"error": _error(error)}, error.headers())


OPENAI = OpenAIDialect()


class OpenAIRoute(DialectRoute):
    dialect = OPENAI


class ChatCompletionEncoder(Encoder):
    """`chat.completion.chunk` events: role, deltas, finish, usage (if asked), [DONE]."""

    media_type = "text/event-stream"

    def __init__(self, relay: Relay, stream_id: str, include_usage: bool = False) -> None:
        super().__init__(relay, stream_id)
        self.include_usage = include_usage
        head = {
            "id": f"chatcmpl-{stream_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": relay.model,
        }
        self._head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":'
        self._open = self._head + b'[{"index":0,"delta":{"content":'
        self._reasoning = self._head + b'[{"index":0,"delta":{"reasoning_content":'
        self._close = b'},"logprobs":null,"finish_reason":null}]'
        self._close += b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._calls: dict[int, int] = {}  # a part's call index -> the call's index here
        self._signed: tuple[str, str] | None = None  # a signature for the next call's id
        self._signed_at = -1  # ... if that call is the very next delta (`deltas` then)

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return self._open + orjson.dumps(text) + self._close

    def part(self, part: StreamPart) -> bytes:
        self.deltas += 1
        if isinstance(part, ReasoningDelta):
            return self._reasoning + orjson.dumps(part.text) + self._close
        if isinstance(part, ToolCallStart):
            if part.index in self._calls:
                return b""  # a second start of one call: the first one stands
            ordinal = self._calls[part.index] = len(self._calls)
            signed = self._signed if self._signed_at == self.deltas - 1 else None
            call_id, self._signed = _signed(part.id, signed), None
            function = {"name": part.name, "arguments": ""}
            call = {"index": ordinal, "id": call_id, "type": "function", "function": function}
            return self._delta({"tool_calls": [call]})
        if isinstance(part, ToolCallDelta) and (index := self._calls.get(part.index)) is not None:
            fragment = {"index": index, "function": {"arguments": part.arguments}}
            return self._delta({"tool_calls": [fragment]})
        if isinstance(part, ReasoningEnd):  # a text part's signature: text comes in between
            self._signed = _carried(part.signature, part.origin, part.redacted)
            self._signed_at = self.deltas
        return b""  # a signature (no slot but a call's id), a call's end, an unknown call

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def _frame(self, choices: list[dict[str, Any]], **fields: Any) -> bytes:
        if self.include_usage:
            fields.setdefault("usage", None)
        tail = orjson.dumps({"choices": choices, **fields})[len(b'{"choices":') :]
        return self._head + tail + b"\n\n"

    def opening(self) -> bytes:
        role = {"role": "assistant", "content": ""}
        return self._frame([{"index": 0, "delta": role, "logprobs": None, "finish_reason": None}])

    def closing(self) -> list[bytes]:
        finish = openai_finish_reason(self.relay.outcome.finish_reason, bool(self._calls))
        frames = [
            self._frame([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}])
        ]
        if self.include_usage:
            frames.append(self._frame([], usage=_usage(self.relay.outcome.usage)))
        frames.append(b"data: [DONE]\n\n")
        return frames

    def error_frame(self, error: GatewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": _error(error)}) + b"\n\n"


def _carried(signature: str | None, origin: str | None, redacted: bool) -> tuple[str, str] | None:
    """A signature the client must give back with the next call (it has no other slot)."""
    if signature is None or origin not in SIGNED_ORIGINS or redacted:
        return None
    return signature, origin


def _signed(call_id: str, signed: tuple[str, str] | None) -> str:
    return call_id if signed is None else signed_call_id(call_id, *signed)


def completion_body(relay: Relay, stream_id: str, blocks: list[AnswerBlock]) -> dict[str, Any]:
    """A whole `chat.completion` object (stream: false): its text, its reasoning as
    `reasoning_content`, its calls as `tool_calls` (then `content` is null when it has no
    text, as OpenAI sends it)."""
    text = "".join(block.text for block in blocks if not isinstance(block, Reasoning | ToolCall))
    thought = "".join(block.text for block in blocks if isinstance(block, Reasoning))
    calls, signed = [], None
    for block in blocks:
        if isinstance(block, Reasoning):
            signed = _carried(block.signature, block.origin, block.redacted)
        elif isinstance(block, ToolCall):
            function = {"name": block.name, "arguments": block.arguments}
            call_id, signed = _signed(block.id, signed), None
            calls.append({"id": call_id, "type": "function", "function": function})
        else:  # text between: the signature was the text's
            signed = None
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls and not text else text,
        "refusal": None,
    }
    if thought:
        message["reasoning_content"] = thought
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{stream_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": relay.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": openai_finish_reason(relay.outcome.finish_reason, bool(calls)),
            }
        ],
        "usage": _usage(relay.outcome.usage),
    }
