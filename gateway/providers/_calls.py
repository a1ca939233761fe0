"""Tool calls and content parts as every upstream adapter reads and writes them (SPEC §4.9).

The adapters differ in their wire shapes; what they share is here, written once:

- `StreamedCalls`: the calls of one answer as they stream in, keyed by whatever the upstream
  numbers them by, each given its place among the answer's calls (a per-response counter,
  never the upstream's index or the call's name: parallel Gemini calls arrive as separate
  whole chunks, and numbering them by name merges them). It yields the stream parts.
- `whole_call`: a call that arrives whole (Gemini, Ollama) as start, one fragment, end.
- `new_call_id`: an id for an upstream that gives calls none (`call_` and 24 characters of
  `[A-Za-z0-9]`, valid in every dialect).
- Request helpers: a replayed call's arguments as an object, a tool result as text, a
  message's parts split by kind.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import orjson

from gateway.errors import BadRequest, UpstreamProtocolError
from gateway.parts import (
    Image,
    StreamPart,
    Text,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
)
from gateway.providers.base import ChatRequest

__all__ = [
    "StreamedCalls",
    "arguments_object",
    "data_url",
    "new_call_id",
    "result_images",
    "result_text",
    "sampling_config",
    "whole_call",
]

_ALPHABET = string.ascii_letters + string.digits


def sampling_config(
    request: ChatRequest, max_tokens: str, top_p: str = "topP", stop: str = "stopSequences"
) -> dict[str, Any]:
    """The request's sampling controls under an API's own names (Gemini's `generationConfig`,
    Converse's `inferenceConfig`, Ollama's `options`); only those the request sets."""
    config: dict[str, Any] = {}
    names = (("max_tokens", max_tokens), ("temperature", "temperature"), ("top_p", top_p))
    for ours, theirs in names:
        value = getattr(request, ours)
        if value is not None:
            config[theirs] = value
    if request.stop:
        config[stop] = list(request.stop)
    return config


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def whole_call(index: int, call_id: str | None, name: str, arguments: Any) -> list[StreamPart]:
    """A call that arrived whole: start, its arguments' JSON as one fragment, end."""
    text = orjson.dumps(arguments if arguments is not None else {}).decode()
    return [
        ToolCallStart(index, call_id or new_call_id(), name),
        ToolCallDelta(index, text),
        ToolCallEnd(index),
    ]


class StreamedCalls:
    """One answer's streamed calls: the upstream's key for each (its index, its block number)
    → the call's place among the answer's calls. Calls are sequential on the wire of every
    upstream that streams arguments; a fragment for a call already ended is a broken stream,
    never appended to the wrong call."""

    __slots__ = ("_ended", "_open", "count")

    def __init__(self) -> None:
        self.count = 0  # calls started so far (the next call's index)
        self._open: dict[object, int] = {}  # upstream key -> index, for calls not ended
        self._ended: set[object] = set()

    def start(self, key: object, call_id: str | None, name: str) -> ToolCallStart:
        if key in self._open or key in self._ended:
            raise UpstreamProtocolError("the upstream started the same tool call twice")
        index = self.count
        self.count += 1
        self._open[key] = index
        return ToolCallStart(index, call_id or new_call_id(), name)

    def is_open(self, key: object) -> bool:
        return key in self._open

    def fragment(self, key: object, arguments: str) -> ToolCallDelta:
        index = self._open.get(key)
        if index is None:
            raise UpstreamProtocolError("the upstream sent arguments for a call it had not started")
        return ToolCallDelta(index, arguments)

    def end(self, key: object) -> ToolCallEnd | None:
        index = self._open.pop(key, None)
        if index is None:
            return None
        self._ended.add(key)
        return ToolCallEnd(index)

    def end_all(self) -> list[StreamPart]:
        """The upstream ended the turn: every call still open ends, in order."""
        ended: list[StreamPart] = []
        for key in sorted(self._open, key=self._open.__getitem__):
            end = self.end(key)
            if end is not None:
                ended.append(end)
        return ended


# --- Requests ------------------------------------------------------------------------------


def arguments_object(arguments: str, where: str) -> Any:
    """A replayed call's arguments (JSON text) as the object Anthropic, Gemini and Ollama
    take. Arguments that are not a JSON object cannot be sent to them: 400 naming the call
    (never one half of a call/result pair dropped)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{where}: the tool call's arguments are not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: the tool call's arguments are not a JSON object")
    return value


def result_text(result: ToolResult) -> str:
    """A tool result as text, for upstreams whose results are strings."""
    if isinstance(result.content, str):
        return result.content
    return "".join(part.text for part in result.content if isinstance(part, Text))


def result_images(result: ToolResult) -> list[Image]:
    if isinstance(result.content, str):
        return []
    return [part for part in result.content if isinstance(part, Image)]


def data_url(image: Image | Any) -> str:
    """An inline image or document as a `data:` URL, or its https URL."""
    if image.data is not None:
        return f"data:{image.media_type or 'application/octet-stream'};base64,{image.data}"
    assert image.url is not None
    return str(image.url)
