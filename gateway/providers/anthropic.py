"""Anthropic Messages streaming (`POST /v1/messages`, `stream: true`).

Text is `content_block_delta` with `delta.type == "text_delta"`; `thinking` blocks are reasoning
parts, closed at their `content_block_stop` with their signature (`redacted_thinking`: its
data), and `tool_use` blocks are tool-call parts (`input_json_delta` fragments, ended at the
block's stop). Citation deltas are not answer text. `ping` and unknown event types are ignored,
as Anthropic asks. Usage: input tokens from `message_start`, cumulative output tokens from the
last `message_delta`. The stream is complete only at `message_stop`; `event: error` (for
example `overloaded_error`) raises.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, Literal

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.parts import (
    EFFORT_BUDGET,
    ContentPart,
    Document,
    Image,
    Reasoning,
    ReasoningControl,
    ReasoningDelta,
    ReasoningEnd,
    Text,
    ToolCall,
    ToolResult,
    text_of,
)
from gateway.providers._calls import StreamedCalls, arguments_object
from gateway.providers._http import (
    EventHandler,
    HTTPProviderConfig,
    UpstreamClient,
    in_stream_error,
    parse_event,
    sse_stream,
)
from gateway.providers._shapes import count, obj, object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage

log = logging.getLogger("gateway.providers.anthropic")

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicConfig",
    "AnthropicProvider",
    "message_reader",
    "read_progress",
    "unfinished",
]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # required by the API


class AnthropicConfig(HTTPProviderConfig):
    type: Literal["anthropic"] = "anthropic"
    base_url: str = "https://api.anthropic.com"


class AnthropicProvider:
    def __init__(self, config: AnthropicConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = httpx.URL(f"{config.base_url}/v1/messages")  # parsed once, not per request

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            **request.anthropic_headers,
            **self.config.headers,
        }
        return self.post(_body(request), headers, stream=True, beta=False)

    def post(
        self, body: dict[str, Any], headers: dict[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        """The Messages request with this provider's key. Claude on Vertex and Bedrock is the
        same request in another envelope: their adapters change this, and nothing else."""
        headers["x-api-key"] = self.config.require_key()
        url = self._url.copy_add_param("beta", "true") if beta else self._url
        return self._client.post_json(url, body, headers)

    @property
    def client(self) -> UpstreamClient:
        return self._client

    def native_request(
        self, body: dict[str, Any], client_headers: Mapping[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        """The native path's request (gateway.native): a client's own body and its version and
        beta headers, with this provider's credentials; `?beta=true` kept when the client's
        SDK used its beta namespace."""
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
            **client_headers,
            **self.config.headers,
        }
        return self.post(body, headers, stream=stream, beta=beta)

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        build = partial(self.build_request, request)
        max_bytes = self.config.max_event_bytes
        return sse_stream(self._client, build, max_bytes, message_reader(), outcome, unfinished)

    async def aclose(self) -> None:
        return None


def unfinished(outcome: StreamOutcome) -> UpstreamProtocolError:
    return UpstreamProtocolError("the upstream stream ended before message_stop")


class _MessageStream:
    """One stream's reading: the kind of each open content block, a thinking block's
    signature until its stop, and the tool calls in flight (keyed by block index)."""

    __slots__ = ("blocks", "calls", "signature")

    def __init__(self) -> None:
        self.blocks: dict[Any, str] = {}  # block index -> "thinking", "redacted" or "tool"
        self.signature: dict[Any, str] = {}  # block index -> signature or redacted data
        self.calls = StreamedCalls()

    def on_event(self, event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
        kind = event.event
        if kind == "content_block_delta":
            data = object_at(parse_event(event.data), "a content_block_delta event")
            delta = obj(data, "delta")
            if delta.get("type") == "text_delta":
                if value := text(delta, "text"):
                    batch.append(value)
            else:
                self.delta(data.get("index"), delta, batch)
        elif kind == "message_stop":
            return True
        elif kind == "content_block_start":
            self.start(object_at(parse_event(event.data), "a content_block_start event"), batch)
        elif kind == "content_block_stop":
            data = object_at(parse_event(event.data), "a content_block_stop event")
            self.stop(data.get("index"), batch)
        elif kind == "error":
            raise in_stream_error(parse_event(event.data))
        elif kind in ("message_start", "message_delta"):
            read_progress(kind, parse_event(event.data), outcome)
        return False

    def start(self, data: dict[str, Any], batch: Batch) -> None:
        index, block = data.get("index"), obj(data, "content_block")
        kind = block.get("type")
        if kind == "thinking":
            self.blocks[index] = "thinking"
            if thought := text(block, "thinking"):
                batch.append(ReasoningDelta(thought))
        elif kind == "redacted_thinking":
            self.blocks[index] = "redacted"
            self.signature[index] = text(block, "data") or ""
        elif kind == "tool_use":
            self.blocks[index] = "tool"
            name = text(block, "name")
            if not name:
                raise UpstreamProtocolError("the upstream started a tool_use block without a name")
            batch.append(self.calls.start(index, text(block, "id"), name))

    def delta(self, index: Any, delta: dict[str, Any], batch: Batch) -> None:
        kind = delta.get("type")
        if kind == "thinking_delta":
            if thought := text(delta, "thinking"):
                batch.append(ReasoningDelta(thought))
        elif kind == "signature_delta":
            self.signature[index] = self.signature.get(index, "") + (text(delta, "signature") or "")
        elif kind == "input_json_delta" and (fragment := text(delta, "partial_json")):
            batch.append(self.calls.fragment(index, fragment))

    def stop(self, index: Any, batch: Batch) -> None:
        kind = self.blocks.pop(index, None)
        if kind == "tool":
            if (end := self.calls.end(index)) is not None:
                batch.append(end)
        elif kind is not None:
            signature = self.signature.pop(index, None) or None
            batch.append(ReasoningEnd(signature, ORIGIN, redacted=kind == "redacted"))


ORIGIN = "anthropic"  # the origin of the signatures this adapter reads (SPEC §4.9)


def message_reader() -> EventHandler[SSEEvent]:
    """A reader of one stream's events (its open blocks are its state): for this adapter's
    streams, and for Claude on Bedrock, whose events arrive in event-stream frames."""
    return _MessageStream().on_event


def _body(request: ChatRequest) -> dict[str, Any]:
    systems = [request.system] if request.system is not None else []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if message.role == "system":  # Anthropic's system prompt, in order
            systems.append(text_of(message.content))
        elif (content := _content(message, f"messages.{i}")) or isinstance(message.content, str):
            messages.append({"role": message.role, "content": content})
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "stream": True,
    }
    if systems:
        body["system"] = "\n\n".join(systems)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    _beyond_text(request, body)
    body.update(request.anthropic_params)
    body.update(request.extra)
    return body


def _content(message: ChatMessage, where: str) -> str | list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return content
    # Tool results first in their user turn (Anthropic wants them before any other block).
    ordered = sorted(content, key=lambda part: not isinstance(part, ToolResult))
    blocks = [_block(part, where) for part in ordered]
    return [block for block in blocks if block is not None]


def _block(part: ContentPart, where: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None  # no empty blocks
    if isinstance(part, Image | Document):
        return _media(part)
    if isinstance(part, ToolCall):
        input_ = arguments_object(part.arguments, where)
        return {"type": "tool_use", "id": tool_id(part.id), "name": part.name, "input": input_}
    if isinstance(part, ToolResult):
        return _result(part)
    return _reasoning(part)


def _media(part: Image | Document) -> dict[str, Any]:
    kind = "image" if isinstance(part, Image) else "document"
    if part.data is not None:
        media_type = part.media_type or ("application/pdf" if kind == "document" else None)
        source = {"type": "base64", "media_type": media_type, "data": part.data}
    else:
        source = {"type": "url", "url": part.url}
    block: dict[str, Any] = {"type": kind, "source": source}
    if isinstance(part, Document) and part.title:
        block["title"] = part.title
    return block


def _result(part: ToolResult) -> dict[str, Any]:
    content: str | list[dict[str, Any]]
    if isinstance(part.content, str):
        content = part.content
    else:
        content = [
            {"type": "text", "text": p.text} if isinstance(p, Text) else _media(p)
            for p in part.content
            if not isinstance(p, Text) or p.text
        ]
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_id(part.call_id),
        "content": content,
    }
    if part.is_error:
        block["is_error"] = True
    return block


def _reasoning(part: Reasoning) -> dict[str, Any] | None:
    """Earlier thinking goes back only with a signature Anthropic made (SPEC §4.9)."""
    if part.origin != ORIGIN or not part.signature:
        return None
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


_ID_OK = re.compile(r"[A-Za-z0-9_-]{1,128}")


def tool_id(call_id: str) -> str:
    """A call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): unchanged when it fits, else
    its allowed characters and a hash of the whole, the same each time (so a call and its
    result still match, with nothing stored)."""
    if _ID_OK.fullmatch(call_id):
        return call_id
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:55]
    return f"{cleaned}_{hashlib.sha256(call_id.encode()).hexdigest()[:8]}"


def _beyond_text(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
    choice: dict[str, Any] | None = None
    if request.tool_choice is not None:
        mode = request.tool_choice.mode
        choice = {"type": {"required": "any"}.get(mode, mode)}
        if mode == "tool":
            choice["name"] = request.tool_choice.name
    if request.parallel_tool_calls is False and request.tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        body["tool_choice"] = choice
    if request.response_format is not None:
        schema = request.response_format.schema or {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if request.reasoning is not None:
        _thinking(request.reasoning, body, _unsigned_tool_turn(body["messages"]))


def _unsigned_tool_turn(messages: list[dict[str, Any]]) -> bool:
    """Whether an assistant turn with tool calls has no thinking block of Anthropic's: with
    thinking on, the API refuses such a conversation ("expected thinking ... found tool_use"),
    and a client of another dialect (an OpenAI client) cannot send Anthropic's signatures
    back. Such a request goes without thinking rather than failing."""
    for message in messages:
        content = message["content"]
        if message["role"] != "assistant" or isinstance(content, str):
            continue
        kinds = [block["type"] for block in content]
        if "tool_use" in kinds and kinds[0] not in ("thinking", "redacted_thinking"):
            return True
    return False


def _thinking(control: ReasoningControl, body: dict[str, Any], unsigned: bool) -> None:
    if not control.enabled:
        body["thinking"] = {"type": "disabled"}
        return
    if unsigned:
        log.debug("thinking left off: an earlier tool-use turn has no Anthropic signature")
        return
    budget = control.budget() or EFFORT_BUDGET["medium"]
    # The budget is part of max_tokens (as reasoning tokens are of OpenAI's): kept under it.
    budget = min(budget, body["max_tokens"] - 1)
    if budget < 1024:  # the API's least budget: too little room left to think at all
        return
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}


def read_progress(kind: str, data: Any, outcome: StreamOutcome) -> None:
    """The model, usage and stop reason of a message_start or message_delta event."""
    event = object_at(data, f"a {kind} event")
    if kind == "message_start":
        message = obj(event, "message")
        outcome.model = text(message, "model")
        usage = obj(message, "usage")
        outcome.usage = Usage(count(usage, "input_tokens"), count(usage, "output_tokens"))
        return
    stop_reason = text(obj(event, "delta"), "stop_reason")
    if stop_reason:
        outcome.finish_reason = stop_reason
    usage = obj(event, "usage")
    current = outcome.usage or Usage()
    # message_delta usage is cumulative: take the latest values, never add them up.
    prompt, completion = count(usage, "input_tokens"), count(usage, "output_tokens")
    outcome.usage = Usage(
        current.prompt_tokens if prompt is None else prompt,
        current.completion_tokens if completion is None else completion,
    )
