"""Relay responses: the stream of deltas encoded as text, SSE or NDJSON (SPEC §4.1).

`RelayResponse` sends the headers with the first delta (the relay is already primed), writes
each delta the moment it arrives, and owns every way a stream can end:

    complete           the upstream finished: the format's end frame, then the last chunk
    upstream failure   the format's in-band error; in text mode the connection is ended
                       without the terminating chunk so that no client mistakes it for whole
    client gone        the guard cancels the task wherever it waits; nothing more is sent
    shutdown           the drain interrupts it after the grace period: in-band error

and, whatever happened, closes the encoder and the relay (so the upstream connection) in its
own `finally`, not when the garbage collector gets round to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway import ids
from gateway.errors import GatewayError, Unavailable
from gateway.keepalive import Keepalive
from gateway.lifecycle import Interrupt, StreamGuard
from gateway.limits import Limiter
from gateway.observability import RequestRecord, outcome_of
from gateway.parts import StreamPart
from gateway.providers.base import Batch
from gateway.relay import Relay

__all__ = [
    "FORMATS",
    "Encoder",
    "NDJSONEncoder",
    "RelayEventSourceResponse",
    "RelayResponse",
    "SSEEncoder",
    "TextEncoder",
    "new_stream_id",
]


class StreamTruncated(Exception):
    """Text mode failed after the commit point: end the connection without the last chunk."""


def new_stream_id() -> str:
    return ids.token_urlsafe(16)  # 128 random bits, URL-safe


class Encoder:
    """Turns a primed relay into body bytes. One instance per response.

    `body()` is the same for every format; a format supplies the frame for each delta, the
    frames before and after them, and its in-band error frame (None: truncate instead).
    """

    media_type = "text/plain; charset=utf-8"
    keepalive: bytes | None = None  # sent after `sse_keepalive_s` of silence, if the format has one

    def __init__(self, relay: Relay, stream_id: str) -> None:
        self.relay = relay
        self.stream_id = stream_id
        self.error: GatewayError | None = None
        self.deltas = 0

    async def body(self) -> AsyncGenerator[bytes, None]:
        """One body chunk per upstream read: the opening frames go with the first batch's.

        A failure ends the iteration with `self.error` set; `ending()` then gives the last
        chunk, so that the end of a stream is one write too.
        """
        relay = self.relay
        head = self.opening() or b""
        try:  # a dialect may find the upstream's output broken (an Anthropic call's input)
            if relay.first:
                head += self.frames(relay.first)
        except GatewayError as exc:
            self.error = exc
        if head:
            yield head
        if self.error is not None:
            return
        try:
            async for batch in relay.rest:
                yield self.frames(batch)
        except GatewayError as exc:
            self.error = exc

    def frames(self, batch: Batch) -> bytes:
        """The deltas of one read, each in its own frame, in one chunk (SPEC §4.1)."""
        if len(batch) == 1:
            delta = batch[0]
            return self.delta(delta) if isinstance(delta, str) else self.part(delta)
        return b"".join([self.delta(d) if isinstance(d, str) else self.part(d) for d in batch])

    def ending(self) -> bytes:
        """The last chunk: the closing frames, or the in-band error (text: StreamTruncated)."""
        if self.error is None:
            return b"".join(self.closing())
        frame = self.error_frame(self.error)
        if frame is None:
            raise StreamTruncated from self.error
        return frame

    def opening(self) -> bytes | None:
        return None

    def delta(self, text: str) -> bytes:
        raise NotImplementedError

    def part(self, part: StreamPart) -> bytes:
        """A part beyond text (`gateway.parts`): dropped by the formats that carry text only
        (`/stream`'s text, SSE and NDJSON); the client dialects frame them."""
        return b""

    def closing(self) -> list[bytes]:
        return []

    def error_frame(self, error: GatewayError) -> bytes | None:
        """The in-band error; None where the format has none (text truncates instead)."""
        return None

    def end_summary(self) -> dict[str, Any]:
        outcome = self.relay.outcome
        return {
            "finish_reason": outcome.finish_reason,
            "usage": outcome.usage.as_dict() if outcome.usage else None,
            "model": self.relay.model,
            "provider": self.relay.provider,
        }


class TextEncoder(Encoder):
    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return text.encode()


class SSEEncoder(Encoder):
    media_type = "text/event-stream"

    def __init__(self, relay: Relay, stream_id: str) -> None:
        super().__init__(relay, stream_id)
        self._id = stream_id.encode() + b":"

    def delta(self, text: str) -> bytes:
        # A pre-built template: one small bytes format per delta instead of a pydantic model.
        # It writes exactly what format_sse_event(data_str=..., id=...) writes (tested).
        frame = b"data: %b\nid: %b%d\n\n" % (orjson.dumps(text), self._id, self.deltas)
        self.deltas += 1
        return frame

    def closing(self) -> list[bytes]:
        return [self._frame("done", self.end_summary())]

    def _frame(self, event: str, data: dict[str, Any]) -> bytes:
        next_id = f"{self.stream_id}:{self.deltas}"
        return format_sse_event(data_str=orjson.dumps(data).decode(), event=event, id=next_id)

    def error_frame(self, error: GatewayError) -> bytes:
        return self._frame("error", {"type": error.type, "message": error.message})


class NDJSONEncoder(Encoder):
    media_type = "application/x-ndjson"

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        return b'{"text":%b}\n' % orjson.dumps(text)

    def closing(self) -> list[bytes]:
        return [orjson.dumps({"done": True, **self.end_summary()}) + b"\n"]

    def error_frame(self, error: GatewayError) -> bytes:
        return orjson.dumps({"error": {"type": error.type, "message": error.message}}) + b"\n"


FORMATS: dict[str, type[Encoder]] = {
    "text": TextEncoder,
    "sse": SSEEncoder,
    "ndjson": NDJSONEncoder,
}

Finished = Callable[["RelayResponse"], Awaitable[None]]


class RelayResponse(StreamingResponse):
    def __init__(
        self,
        encoder: Encoder,
        guard: StreamGuard,
        headers: list[tuple[bytes, bytes]],
        finished: Finished | None = None,
        keepalive_s: float | None = None,
    ) -> None:
        self.encoder = encoder
        self.guard = guard
        self.chunks = encoder.body()
        self.body_iterator = self.chunks
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", encoder.media_type.encode()), *headers]
        self.finished = finished
        self.keepalive_s = keepalive_s
        self.result = "complete"
        self.bytes_out = 0
        self.record: RequestRecord | None = None
        self.limiter: Limiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._send_all(send)
        except StreamTruncated:
            self.result = _result_of(self.encoder.error)
        except asyncio.CancelledError:
            reason = self.guard.absorb()
            if reason is None:
                raise
            self.result = reason.value
            if reason is Interrupt.SHUTDOWN:
                await self._end_for_shutdown(send)
        finally:
            self.guard.close()
            await self.chunks.aclose()
            await self.encoder.relay.aclose()
            if self.finished is not None:
                await self.finished(self)

    async def _send_all(self, send: Send) -> None:
        frame, interval = self.encoder.keepalive, self.keepalive_s
        if frame is None or interval is None:
            await self._send_body(send)
            return
        keepalive = Keepalive(send, frame, interval)
        try:
            await self._send_body(keepalive.send)
        finally:
            keepalive.close()

    async def _send_body(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        encoder, lease, limiter = self.encoder, self.guard.lease, self.limiter
        async for chunk in self.chunks:
            self.bytes_out += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # A per-key token budget is charged as the stream runs (one compare per chunk).
            if lease is not None and limiter is not None and encoder.deltas >= lease.next_charge:
                await limiter.running(lease, encoder.deltas)
        last = encoder.ending()
        self.guard.close()
        if encoder.error is not None:
            self.result = _result_of(encoder.error)
        self.bytes_out += len(last)
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def _end_for_shutdown(self, send: Send) -> None:
        frame = self.encoder.error_frame(Unavailable("the gateway is shutting down"))
        if frame is None:
            return  # text: end without the last chunk, as for any failure
        await send({"type": "http.response.body", "body": frame, "more_body": False})


class RelayEventSourceResponse(RelayResponse, EventSourceResponse):
    """The SSE flavour: FastAPI's EventSourceResponse, with the relay's lifecycle."""


def _result_of(error: GatewayError | None) -> str:
    return "complete" if error is None else outcome_of(error.type)
