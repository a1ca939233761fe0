"""The OpenAI Chat Completions dialect spoken to clients (SPEC §4.3).

Requests are validated strictly: fields OpenAI's SDKs send are accepted; text-generation
fields are relayed to every provider; OpenAI-only sampling hints go to OpenAI-compatible
upstreams; what a text relay cannot honour (n > 1, tools, JSON modes, images) is a 400.
Streaming answers are `chat.completion.chunk` events built from pre-serialised byte templates
(one small concatenation per delta), then `data: [DONE]`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.dialects import Dialect, DialectRoute, ErrorReply, Finish, finish_of
from gateway.errors import BadRequest, GatewayError
from gateway.models import Attempt, to_chat_request
from gateway.providers.base import ChatRequest, Usage
from gateway.relay import BuildRequest, Relay
from gateway.responses import Encoder
from gateway.schemas import MAX_TEXT, Message, ModelName, StopSequences, StreamRequest

__all__ = [
    "OPENAI",
    "TOOLS_NOT_CARRIED",
    "ChatCompletionEncoder",
    "ChatCompletionRequest",
    "OpenAIDialect",
    "OpenAIRoute",
    "completion_body",
    "openai_finish_reason",
]

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    text: Text | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None
    function_call: Any | None = None

    def text(self) -> str:
        if self.role in ("tool", "function") or self.tool_calls or self.function_call:
            raise BadRequest(
                "tool and function messages are not supported: the gateway relays text"
            )
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.type != "text" for part in self.content):
            raise BadRequest("only text content parts are supported")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include_usage: bool = False
    include_obfuscation: bool | None = None


_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}

# OpenAI sampling hints passed on to OpenAI-compatible upstreams only.
OPENAI_ONLY = (
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
    "user",
)


# The translated path carries text only so far (SPEC §4.9's native path carries the rest).
TOOLS_NOT_CARRIED = (
    "tools are not supported on this model: they reach only a model whose provider is of "
    "type 'openai' (the native path); to other providers the gateway relays text so far"
)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=10_000)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: StopSequences | None = None
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    user: str | None = None
    # Accepted and ignored: they do not change the text that is relayed.
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Accepted only in the forms that need nothing the gateway lacks.
    tools: list[Any] | None = None
    tool_choice: Any | None = None
    functions: list[Any] | None = None
    function_call: Any | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None

    def check_supported(self) -> None:
        if self.n not in (None, 1):
            raise BadRequest("n > 1 is not supported: the gateway relays one choice")
        if self.tools or self.functions or self.tool_choice not in (None, "none"):
            raise BadRequest(TOOLS_NOT_CARRIED)
        if self.function_call not in (None, "none"):
            raise BadRequest("function calling is not supported: the gateway relays text")
        if self.logprobs or self.top_logprobs:
            raise BadRequest("logprobs are not supported")
        if self.response_format not in (None, {"type": "text"}):
            raise BadRequest("response_format other than text is not supported")
        if self.modalities not in (None, ["text"]):
            raise BadRequest("only the text modality is supported")

    def to_stream_request(self) -> StreamRequest:
        # Built without validation: every field was validated above, and joined content parts
        # may legitimately exceed a single field's length limit.
        messages = []
        for message in self.messages:
            content = message.text()  # refuses tool and function messages
            messages.append(Message.model_construct(role=_ROLES[message.role], content=content))
        return StreamRequest.model_construct(
            model=self.model,
            messages=messages,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop,
        )

    def openai_params(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in OPENAI_ONLY if getattr(self, key) is not None}

    def builder(self) -> BuildRequest:
        """Each attempt's adapter request: the relayed fields plus the OpenAI-only hints."""
        stream_request, hints = self.to_stream_request(), self.openai_params()

        def build(attempt: Attempt) -> ChatRequest:
            request = to_chat_request(attempt, request=stream_request)
            return replace(request, openai_params=hints) if hints else request

        return build


# OpenAI's own words pass through; every other provider's are mapped by what they mean.
_OWN_REASONS = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter"})
_REASONS = {
    Finish.END: "stop",
    Finish.STOP_SEQUENCE: "stop",
    Finish.LENGTH: "length",
    Finish.TOOL_CALL: "tool_calls",
    Finish.FILTERED: "content_filter",
}


def openai_finish_reason(reason: str | None) -> str:
    """Every provider's finish reason in OpenAI's vocabulary."""
    if reason in _OWN_REASONS:
        return reason
    return _REASONS[finish_of(reason)]


def _usage(usage: Usage | None) -> dict[str, int | None] | None:
    return usage.as_dict() if usage is not None else None


def _error(error: GatewayError) -> dict[str, Any]:
    code = error.code or error.type
    return {"message": error.message, "type": error.type, "param": error.param, "code": code}


class OpenAIDialect(Dialect):
    """OpenAI's envelope `{"error": {message, type, param, code}}`, the gateway's statuses."""

    name = "openai"

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
        self._close = b'},"logprobs":null,"finish_reason":null}]'
        self._close += b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return self._open + orjson.dumps(text) + self._close

    def _frame(self, choices: list[dict[str, Any]], **fields: Any) -> bytes:
        if self.include_usage:
            fields.setdefault("usage", None)
        tail = orjson.dumps({"choices": choices, **fields})[len(b'{"choices":') :]
        return self._head + tail + b"\n\n"

    def opening(self) -> bytes:
        role = {"role": "assistant", "content": ""}
        return self._frame([{"index": 0, "delta": role, "logprobs": None, "finish_reason": None}])

    def closing(self) -> list[bytes]:
        finish = openai_finish_reason(self.relay.outcome.finish_reason)
        frames = [
            self._frame([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}])
        ]
        if self.include_usage:
            frames.append(self._frame([], usage=_usage(self.relay.outcome.usage)))
        frames.append(b"data: [DONE]\n\n")
        return frames

    def error_frame(self, error: GatewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": _error(error)}) + b"\n\n"


def completion_body(relay: Relay, stream_id: str, text: str) -> dict[str, Any]:
    """A whole `chat.completion` object (stream: false)."""
    return {
        "id": f"chatcmpl-{stream_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": relay.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": openai_finish_reason(relay.outcome.finish_reason),
            }
        ],
        "usage": _usage(relay.outcome.usage),
    }
