"""The Vercel AI SDK's UI message stream, spoken to `useChat` and `useCompletion` (SPEC §4.6).

Requests: `useChat`'s body as `DefaultChatTransport` sends it (`id`, `messages[].parts[]`,
`trigger`, `messageId`, plus `model`, `system` and the `/stream` parameters that an app puts
in the transport's `body`), and `useCompletion`'s `{prompt}`. Both become a `StreamRequest`, so
they resolve, admit and relay exactly like `/stream`.

Responses: SSE `data:` events carrying typed JSON chunks, in the order

    start (messageId) · start-step · text-start · text-delta … · text-end · finish-step ·
    finish · [DONE]

and, for a failure after the commit point, `error` (`errorText`) then `[DONE]`, with no
`finish`, so that the client rejects the message instead of showing it as whole. Only chunk
types and fields that `ai` 5.0.0's schema accepts are written: its chunks are strict objects,
so an extra field (a `finishReason` on `finish`, say) would make every 5.x client fail.
Frames are pre-serialised byte templates: one small concatenation per delta. A chat's answer
is read from its generation (`UIReaderResponse`: the first request and every resume write the
same bytes); a stream that is not resumable is a plain relay (`UIMessageResponse`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, InvalidRequest
from gateway.keepalive import Keepalive
from gateway.lifecycle import Interrupt, StreamGuard
from gateway.observability import outcome_of
from gateway.parts import (
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from gateway.redaction import KEY_SHAPED
from gateway.relay import Relay
from gateway.responses import Encoder, RelayEventSourceResponse
from gateway.resume import Reader
from gateway.resume.events import End, Failure
from gateway.schemas import MAX_TEXT, Message, ModelName, StopSequences, StreamRequest

__all__ = [
    "KEEP_ALIVE_S",
    "UI_STREAM_HEADERS",
    "UIChatRequest",
    "UICompletionRequest",
    "UIMessageEncoder",
    "UIMessageResponse",
    "UIReaderResponse",
    "error_text",
    "message_id_for",
]

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
# The chat id travels back in the resume URL (`/ui/chat/{id}/stream`): no slash, no controls.
ChatId = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f/]{1,256}$")]

UI_STREAM_HEADERS = [(b"x-vercel-ai-ui-message-stream", b"v1")]
KEEP_ALIVE_S = 15.0  # SPEC §4.6: an SSE comment after this much silence
ERROR_TEXT_MAX = 300  # characters: errorText is shown to people, keep it short


class UIPart(BaseModel):
    """One part of a UI message. Parts carry type-specific fields (`state`, `providerMetadata`
    …), so unknown fields are allowed here; the type decides whether the part is relayed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=256)]
    text: Text | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(max_length=256)] | None = None
    role: Literal["system", "user", "assistant"]
    metadata: Any = None
    parts: Annotated[list[UIPart], Field(max_length=10_000)]


class GenerationParams(BaseModel):
    """The `/stream` parameters, accepted as extra body fields (the transport's `body`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName | None = None
    system: Text | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: StopSequences | None = None

    def _params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "system": self.system,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
        }


class UIChatRequest(GenerationParams):
    """POST /ui/chat: the body `DefaultChatTransport` sends."""

    id: ChatId
    messages: Annotated[list[UIMessage], Field(min_length=1, max_length=10_000)]
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    messageId: Annotated[str, StringConstraints(max_length=256)] | None = None

    def to_stream_request(self) -> StreamRequest:
        """Text parts become the provider's messages; anything else is refused, by name."""
        messages = []
        for index, message in enumerate(self.messages):
            texts = _texts(index, message)
            if texts is not None:
                messages.append(Message(role=message.role, content="".join(texts)))
        if not messages:
            raise InvalidRequest("messages: no message has a text part")
        return StreamRequest(messages=messages, **self._params())


class UICompletionRequest(GenerationParams):
    """POST /ui/completion: `useCompletion`'s body."""

    prompt: Text

    def to_stream_request(self) -> StreamRequest:
        return StreamRequest(prompt=self.prompt, **self._params())


def _texts(index: int, message: UIMessage) -> list[str] | None:
    """A message's text parts; None for one with none (an answer that was stopped before its
    first word has only its `step-start` marker: it says nothing, so it is left out)."""
    texts = []
    for number, part in enumerate(message.parts):
        if part.type == "text":
            if part.text is None:
                raise InvalidRequest(f"messages.{index}.parts.{number}.text: Field required")
            texts.append(part.text)
        elif part.type != "step-start":  # the SDK's own marker between steps: no content
            raise InvalidRequest(
                f"messages.{index}.parts.{number}: parts of type {part.type[:64]!r} are not "
                "supported (the gateway relays text parts only)"
            )
    return texts or None


def message_id_for(stream_id: str) -> str:
    """The message's id, derived from its generation's id: every reader of the generation, on
    any replica, starts the message with the same `messageId` (nothing else to store)."""
    return "msg-" + stream_id


def error_text(error_type: str, message: str) -> str:
    """The in-band `errorText`: the error's type and message, short, with nothing key-shaped."""
    text = KEY_SHAPED.sub("[redacted]", f"{error_type}: {message}")
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


# ---- frames ------------------------------------------------------------------------------------


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


DONE = b"data: [DONE]\n\n"
TEXT_ID = "text-0"  # one text part per message: the id only has to be unique within it
_DELTA_HEAD = b'data: {"type":"text-delta","id":"' + TEXT_ID.encode() + b'","delta":'
CLOSING = (
    _event({"type": "text-end", "id": TEXT_ID})
    + _event({"type": "finish-step"})
    + _event({"type": "finish"})
    + DONE
)
ABORT = _event({"type": "abort"}) + DONE  # stopped (SPEC §4.6): not an error, not a finish


def opening_frames(message_id: str) -> bytes:
    return (
        _event({"type": "start", "messageId": message_id})
        + _event({"type": "start-step"})
        + _event({"type": "text-start", "id": TEXT_ID})
    )


def delta_frame(text: str) -> bytes:
    return _DELTA_HEAD + orjson.dumps(text) + b"}\n\n"


class UIParts:
    """Frames a stream's parts beyond text as `ai` 5.0.0's chunks: reasoning as
    `reasoning-start/-delta/-end` (a signature rides in `providerMetadata.gateway`, so that it
    comes back with the message's reasoning part), tool calls as `tool-input-start/-delta` and,
    when the upstream ends the call, `tool-input-available` with the parsed input (the raw
    text when it is not JSON: 5.0.0 has no `tool-input-error`). One per response."""

    __slots__ = ("_calls", "_reasoning", "_reasonings")

    def __init__(self) -> None:
        self._reasoning: str | None = None  # the id of the reasoning part open, if one is
        self._reasonings = 0
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, args

    def frame(self, part: StreamPart) -> bytes:
        if isinstance(part, ReasoningDelta):
            head = b""
            if self._reasoning is None:
                self._reasoning = f"reasoning-{self._reasonings}"
                self._reasonings += 1
                head = _event({"type": "reasoning-start", "id": self._reasoning})
            chunk = {"type": "reasoning-delta", "id": self._reasoning, "delta": part.text}
            return head + _event(chunk)
        if isinstance(part, ReasoningEnd):
            return self._end_reasoning(part)
        return self._end_reasoning(None) + self._call(part)

    def _end_reasoning(self, end: ReasoningEnd | None) -> bytes:
        if self._reasoning is None:
            if end is None or end.signature is None:
                return b""
            self._reasoning = f"reasoning-{self._reasonings}"  # a signature with no text
            self._reasonings += 1
            head = _event({"type": "reasoning-start", "id": self._reasoning})
        else:
            head = b""
        chunk: dict[str, Any] = {"type": "reasoning-end", "id": self._reasoning}
        if end is not None and end.signature is not None:
            meta = {"signature": end.signature, "origin": end.origin, "redacted": end.redacted}
            chunk["providerMetadata"] = {"gateway": meta}
        self._reasoning = None
        return head + _event(chunk)

    def _call(self, part: ToolCallStart | ToolCallDelta | ToolCallEnd) -> bytes:
        if isinstance(part, ToolCallStart):
            self._calls[part.index] = (part.id, part.name, [])
            chunk = {"type": "tool-input-start", "toolCallId": part.id, "toolName": part.name}
            return _event(chunk)
        call = self._calls.get(part.index)
        if call is None:
            return b""
        call_id, name, arguments = call
        if isinstance(part, ToolCallDelta):
            arguments.append(part.arguments)
            chunk = {
                "type": "tool-input-delta",
                "toolCallId": call_id,
                "inputTextDelta": part.arguments,
            }
            return _event(chunk)
        del self._calls[part.index]
        text = "".join(arguments)
        try:
            value: Any = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            value = text
        chunk = {
            "type": "tool-input-available",
            "toolCallId": call_id,
            "toolName": name,
            "input": value,
        }
        return _event(chunk)


def error_frames(error_type: str, message: str) -> bytes:
    """A failure after the first event: `error`, no `finish`, then `[DONE]`."""
    return _event({"type": "error", "errorText": error_text(error_type, message)}) + DONE


class UIMessageEncoder(Encoder):
    """A primed relay as a UI message stream (one `text-delta` event per upstream delta), for
    the streams that are not resumable."""

    media_type = "text/event-stream"

    def __init__(self, relay: Relay, stream_id: str) -> None:
        super().__init__(relay, stream_id)
        self.message_id = message_id_for(stream_id)
        self.parts = UIParts()

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return _DELTA_HEAD + orjson.dumps(text) + b"}\n\n"

    def part(self, part: StreamPart) -> bytes:
        self.deltas += 1
        return self.parts.frame(part)

    def opening(self) -> bytes:
        return opening_frames(self.message_id)

    def closing(self) -> list[bytes]:
        return [CLOSING]

    def error_frame(self, error: GatewayError) -> bytes:
        return error_frames(error.type, error.message)


# ---- keep-alive --------------------------------------------------------------------------------

KEEP_ALIVE = b": keep-alive\n\n"


class _Paced(Protocol):
    keep_alive_s: float


async def keeping_alive(
    response: _Paced, send: Send, send_all: Callable[[Send], Awaitable[None]]
) -> None:
    """Run `send_all(send)`, writing an SSE comment whenever nothing was written for
    `keep_alive_s` (proxies and browsers drop idle connections; every SSE parser ignores
    comments). One loop timer per stream (`Keepalive`), never a task, and never a write after
    the response's last message."""
    keepalive = Keepalive(send, KEEP_ALIVE, response.keep_alive_s)
    try:
        await send_all(keepalive.send)
    finally:
        keepalive.close()


# ---- responses ---------------------------------------------------------------------------------


class UIMessageResponse(RelayEventSourceResponse):
    """A stream that is not resumable (resume disabled, or its store is down): the relay
    response with keep-alive comments; the client leaving cancels the upstream."""

    keep_alive_s = KEEP_ALIVE_S

    async def _send_all(self, send: Send) -> None:
        await keeping_alive(self, send, super()._send_all)


Recorded = Callable[["UIReaderResponse"], None]


class UIReaderResponse(Response):
    """One reader of a chat's generation, as a UI message stream from `start` (SPEC §4.6).

    The first request and every resume read the same events and write the same bytes. The
    client leaving detaches the reader (the generation goes on; the orphan time-out decides);
    a stop ends every reader with `abort`; shutdown with the in-band `unavailable` error."""

    media_type = "text/event-stream"
    keep_alive_s = KEEP_ALIVE_S

    def __init__(
        self,
        reader: Reader,
        guard: StreamGuard,
        message_id: str,
        headers: list[tuple[bytes, bytes]],
        recorded: Recorded,
    ) -> None:
        self.reader = reader
        self.guard = guard
        self.message_id = message_id
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream"), *headers]
        self.recorded = recorded
        self.bytes_out = 0
        self.deltas = 0
        self.parts = UIParts()
        self.result = "complete"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await keeping_alive(self, send, self._send_all)
        except asyncio.CancelledError:
            reason = self.guard.absorb()
            if reason is None:
                raise
            self.result = reason.value
            if reason is Interrupt.SHUTDOWN:
                frame = error_frames("unavailable", "the gateway is shutting down")
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.guard.close()
            await self.reader.aclose()
            self.recorded(self)

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        frames = [opening_frames(self.message_id)]  # they leave with the first events
        async for batch in self.reader.batches():  # the events in hand: one write
            if not batch:
                continue
            last = batch[-1][1]  # only a batch's last event can be terminal
            deltas = batch[:-1] if isinstance(last, End | Failure) else batch
            parts = self.parts
            frames += [
                _DELTA_HEAD + orjson.dumps(delta) + b"}\n\n"
                if isinstance(delta, str)
                else parts.frame(delta)  # type: ignore[arg-type]  # never terminal here
                for _, delta in deltas
            ]
            self.deltas += len(deltas)
            if isinstance(last, End | Failure):
                frames.append(self._terminal(last))
            body = frames[0] if len(frames) == 1 else b"".join(frames)
            frames = []
            self.bytes_out += len(body)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        self.guard.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _terminal(self, payload: End | Failure) -> bytes:
        if isinstance(payload, End):
            return CLOSING
        self.result = payload.type if payload.type == "cancelled" else outcome_of(payload.type)
        if payload.type == "cancelled":
            return ABORT
        return error_frames(payload.type, payload.message)
