"""A stream's deltas as Anthropic content blocks (SPEC §4.7, §4.9).

Anthropic's blocks never interleave: each is started, given its deltas and stopped before the
next starts, with consecutive indexes: thinking (`thinking_delta`, then one `signature_delta`),
redacted thinking (whole), text (`text_delta`), and each tool call (`tool_use` with
`input_json_delta` fragments). Upstreams of other dialects do interleave: an OpenAI-compatible
server may stream a second call's fragments before it ends the first, or text while a call is
open. `Blocks` keeps the client's order rule: while a call's block is open, whatever belongs
to another block waits, in arrival order, and follows when the call ends (so a call's block
always carries its whole input). A call's arguments must be a JSON object when it ends (an
Anthropic client holds `input` as an object): anything else is the upstream's protocol error,
never a block with a string input.

Text deltas with a text block open take `MessagesEncoder`'s one-concatenation fast path
(`text_head`); everything else comes through `feed`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.sse import format_sse_event

from gateway.errors import UpstreamProtocolError
from gateway.parts import (
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    client_signature,
)

__all__ = ["TEXT", "THINKING", "Blocks", "event", "text_head"]

TEXT = "text"
THINKING = "thinking"
_REDACTED = "redacted_thinking"

Delta = str | StreamPart


def event(data: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=orjson.dumps(data).decode(), event=data["type"])


def text_head(index: int) -> bytes:
    """The bytes before a text delta's JSON string: exactly what `event()` writes (tested)."""
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"text_delta","text":' % index
    )


def input_of(name: str, arguments: str) -> dict[str, Any]:
    """A call's arguments as the object Anthropic clients hold (`{}` for none)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamProtocolError(
            f"the upstream's call of {name[:64]!r} has arguments that are not a JSON object"
        )
    return value


class Blocks:
    """The blocks of one answer. `open`: TEXT, THINKING, a call's part index (an int), or
    None; `started`: whether any block was (an answer has at least one)."""

    __slots__ = ("_args", "_index", "_name", "_pending", "calls", "open", "started", "text_head")

    def __init__(self) -> None:
        self.open: str | int | None = None
        self.started = False
        self.text_head = b""
        self.calls = 0  # how many calls the answer made
        self._index = -1
        self._pending: list[Delta] = []
        self._args: list[str] = []  # the open call's argument fragments
        self._name = ""

    def feed(self, delta: Delta) -> bytes:
        if isinstance(self.open, int) and not self._of_open_call(delta):
            self._pending.append(delta)
            return b""
        frames = self._emit(delta)
        if self._pending and not isinstance(self.open, int):
            frames += self._drain()
        return frames

    def finish(self) -> bytes:
        """Close what is open, and emit what waited (calls never ended are ended here)."""
        frames = [self._stop()]
        while self._pending:
            frames.append(self._drain())
            frames.append(self._stop())
        if not self.started:  # an empty answer is one empty text block, as Anthropic sends
            frames.append(self._start({"type": "text", "text": ""}, TEXT) + self._stop())
        return b"".join(frames)

    def _of_open_call(self, delta: Delta) -> bool:
        return isinstance(delta, ToolCallDelta | ToolCallEnd) and delta.index == self.open

    def _drain(self) -> bytes:
        frames = []
        waiting, self._pending = self._pending, []
        while waiting:
            delta = waiting.pop(0)
            if isinstance(self.open, int) and not self._of_open_call(delta):
                self._pending.append(delta)
                continue
            frames.append(self._emit(delta))
            if self._pending and not isinstance(self.open, int):
                waiting = self._pending + waiting
                self._pending = []
        return b"".join(frames)

    def _emit(self, delta: Delta) -> bytes:
        if isinstance(delta, str):
            head = b"" if self.open == TEXT else self._start({"type": "text", "text": ""}, TEXT)
            return head + self.text_head + orjson.dumps(delta) + b"}}\n\n"
        if isinstance(delta, ReasoningDelta):
            head = b"" if self.open == THINKING else self._start_thinking()
            return head + self._delta({"type": "thinking_delta", "thinking": delta.text})
        if isinstance(delta, ReasoningEnd):
            return self._reasoning_end(delta)
        if isinstance(delta, ToolCallStart):
            self.calls += 1
            block = {"type": "tool_use", "id": delta.id, "name": delta.name, "input": {}}
            frames = self._start(block, delta.index)
            self._args, self._name = [], delta.name
            return frames
        if delta.index != self.open:  # a fragment or an end of a call that is not open
            return b""
        if isinstance(delta, ToolCallDelta):
            self._args.append(delta.arguments)
            return self._delta({"type": "input_json_delta", "partial_json": delta.arguments})
        return self._stop()

    def _reasoning_end(self, end: ReasoningEnd) -> bytes:
        if end.signature is None:
            return self._stop() if self.open == THINKING else b""
        signature = client_signature(end.signature, end.origin, "anthropic")
        if end.redacted:
            block = {"type": "redacted_thinking", "data": signature}
            return self._start(block, _REDACTED) + self._stop()
        head = b"" if self.open == THINKING else self._start_thinking()
        signed = self._delta({"type": "signature_delta", "signature": signature})
        return head + signed + self._stop()

    def _start_thinking(self) -> bytes:
        return self._start({"type": "thinking", "thinking": "", "signature": ""}, THINKING)

    def _start(self, block: dict[str, Any], kind: str | int) -> bytes:
        frames = self._stop()
        self._index += 1
        self.open, self.started = kind, True
        if kind == TEXT:
            self.text_head = text_head(self._index)
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return frames + event(start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _stop(self) -> bytes:
        """Stop the block that is open (a call's only once its input is an object)."""
        if self.open is None:
            return b""
        if isinstance(self.open, int):
            input_of(self._name, "".join(self._args))
        self.open = None
        return event({"type": "content_block_stop", "index": self._index})
