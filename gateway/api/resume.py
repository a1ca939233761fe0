"""Resumable `/stream` (SPEC §4.5): the SSE framing of a generation's events, reconnections,
cancel and EventSource tokens.

This module is one consumer of `gateway.resume` (the generation/log/reader layer); it only
frames numbered events as `/stream`'s SSE, with the same bytes a plain SSE stream writes, so a
replayed event and a live one look the same. The plain (non-resumable) path never comes here.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.sse import format_sse_event
from starlette.types import Receive, Scope, Send

from gateway.api._common import request_id
from gateway.api._serve import respond
from gateway.auth import GatewayKey, authenticate, key_of
from gateway.errors import BadRequest, GatewayError, InvalidRequest, NotFound
from gateway.lifecycle import Interrupt, StreamGuard
from gateway.limits import Lease
from gateway.observability import RequestRecord, outcome_of, record_of
from gateway.relay import Relay
from gateway.responses import SSEEncoder
from gateway.resume import Reader
from gateway.resume.events import End, Failure
from gateway.resume.tokens import TOKEN_TTL_S
from gateway.routing import DirectRoute
from gateway.state import GatewayState, state_of
from gateway.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["hand_over", "owner_of", "parse_last_event_id", "reconnect", "router", "start_resumable"]

router = APIRouter(dependencies=[Depends(authenticate)], route_class=DirectRoute)
log = logging.getLogger("gateway.resume")

STREAM_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_LAST_EVENT_ID = re.compile(r"([A-Za-z0-9_\-]{1,64}):([0-9]{1,10})")
_AFTER = re.compile(r"-1|[0-9]{1,10}")
NEVER = 1 << 62
ANONYMOUS = GatewayKey("", b"", None, None, None, None)  # an open gateway's callers
SHUTTING_DOWN = Failure("unavailable", "the gateway is shutting down")


def parse_last_event_id(value: str) -> tuple[str, int]:
    """`<stream>:<n>`, at most 128 bytes; anything else is 400."""
    match = _LAST_EVENT_ID.fullmatch(value) if len(value) <= 128 else None
    if match is None:
        raise BadRequest("Last-Event-ID must look like <stream>:<n>")
    return match.group(1), int(match.group(2))


def owner_of(request: Request) -> str:
    """Who may resume or cancel: the key's name ("" for everyone when the gateway is open)."""
    key = key_of(request)
    return key.name if key is not None else ""


# ---- starting ----------------------------------------------------------------------------------


class LeaseAccounting:
    """A generation's debts: the running token charge, then the slot, tokens and metrics."""

    __slots__ = ("lease", "state")

    def __init__(self, state: GatewayState, lease: Lease | None) -> None:
        self.state = state
        self.lease = lease

    @property
    def next_charge(self) -> int:
        lease = self.lease
        return lease.next_charge if lease is not None and lease.key.tpm is not None else NEVER

    async def running(self, deltas: int) -> None:
        if self.lease is not None:
            await self.state.limiter.running(self.lease, deltas)

    async def ended(
        self, relay: Relay, deltas: int, outcome: str, error: GatewayError | None
    ) -> None:
        self.state.ended(None, relay, outcome, deltas, 0, error)
        await self.state.release(self.lease, relay, deltas)


async def start_resumable(
    request: Request, state: GatewayState, guard: StreamGuard, relay: Relay, stream_id: str
) -> Response:
    """Hand the primed relay to a detached generation; the request becomes its first reader.
    When it cannot be resumable, it is served exactly as a plain SSE stream.

    Runs under the stream's guard (`serve_stream`): a client leaving while Redis creates the
    log gives the stream back; once the generation exists, it owns the accounting."""
    accounting = LeaseAccounting(state, guard.lease)
    generation = await state.generations.start(stream_id, owner_of(request), relay, accounting)
    if generation is None:
        response = respond(request, state, SSEEncoder(relay, stream_id), guard)
        response.raw_headers.append((b"x-stream-resumable", b"false"))
        return response
    hand_over(guard)
    reader = generation.reader(-1)
    return ResumableResponse(request, state, stream_id, reader, guard, join_retry=True)


def hand_over(guard: StreamGuard) -> None:
    """A generation took the stream over: it owns the lease and the accounting now; the
    request's guard only watches its reader."""
    guard.lease = None
    guard.handed_over = True


# ---- reconnecting ------------------------------------------------------------------------------


async def reconnect(request: Request, stream_id: str, after: int) -> Response:
    """Replay after `after`, then live; 204 when there is nothing to resume."""
    state = state_of(request)
    metrics = state.metrics
    try:
        reader = await state.generations.attach(stream_id, owner_of(request), after)
    except GatewayError:
        metrics.reconnections.labels("refused").inc()
        raise
    record = record_of(request.scope)
    if reader is None:
        metrics.reconnections.labels("nothing").inc()
        if record is not None:
            record.status, record.outcome = 204, "rejected"
        return Response(status_code=204, headers={"X-Request-ID": request_id(request)})
    guard = StreamGuard(state.drain, request.receive, admit=False)
    metrics.reconnections.labels("resumed").inc()
    metrics.replayed_events.inc(reader.replayed)
    if log.isEnabledFor(logging.INFO):
        fields = {
            "request_id": request_id(request),
            "stream": stream_id[:8],
            "after": after,
            "replayed": reader.replayed,
            "source": reader.source,
        }
        log.info("stream resumed", extra={"fields": fields})
    response = ResumableResponse(request, state, stream_id, reader, guard)
    if state.tracing is not None:
        response.span = state.tracing.reconnection(request, reader.origin)
    return response


@router.get("/stream/{stream_id}", response_class=Response)
async def resume_stream(request: Request, stream_id: str) -> Response:
    unknown = set(request.query_params) - {"after", "token"}
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    after = request.query_params.get("after", "-1")
    if not _AFTER.fullmatch(after):
        raise BadRequest("after must be an event number")
    if not STREAM_ID.fullmatch(stream_id):
        return _no_content(request)
    return await reconnect(request, stream_id, int(after))


@router.post("/stream/{stream_id}/cancel", response_class=Response)
async def cancel_stream(request: Request, stream_id: str) -> Response:
    """Cancel at once for every reader (`event: error` `cancelled`); 404 when it is not this
    key's running stream (unknown, ended, already cancelled, another owner's)."""
    if not STREAM_ID.fullmatch(stream_id):
        raise NotFound("no such running stream")
    await state_of(request).generations.cancel(stream_id, owner_of(request))
    return _no_content(request)


@router.post("/stream/tokens")
async def stream_token(request: Request) -> JSONResponse:
    """A short-lived token for `EventSource` (`GET /stream?token=`), for the caller's key."""
    token = request.app.state.tokens.issue(key_of(request) or ANONYMOUS)
    return JSONResponse({"token": token, "expires_in": TOKEN_TTL_S})


def _no_content(request: Request) -> Response:
    if (record := record_of(request.scope)) is not None:
        record.status = 204
    return Response(status_code=204, headers={"X-Request-ID": request_id(request)})


# ---- the response ------------------------------------------------------------------------------


class ResumableResponse(Response):
    """One reader's SSE: `retry:`, then every event it gets, framed as plain `/stream` SSE.

    The client leaving detaches the reader (the generation goes on; the orphan time-out
    decides); shutdown ends it with the in-band `unavailable` error."""

    media_type = "text/event-stream"

    def __init__(
        self,
        request: Request,
        state: GatewayState,
        stream_id: str,
        reader: Reader,
        guard: StreamGuard,
        join_retry: bool = False,
    ) -> None:
        self.state = state
        self.reader = reader
        self.guard = guard
        self.stream_id = stream_id
        self.record: RequestRecord | None = record_of(request.scope)
        self.status_code = 200
        self.background = None
        self.retry = format_sse_event(retry=state.settings.resume.resume_retry_ms)
        self.join_retry = join_retry  # the first reader: `retry:` leaves with the first event
        self.raw_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-request-id", request_id(request).encode()),
            (b"x-stream-id", stream_id.encode()),
            (b"x-stream-resumable", b"true"),
            (b"x-gateway-model", reader.model.encode()),
            (b"x-gateway-provider", reader.provider.encode()),
        ]
        self.next_seq = 0
        self.deltas = 0  # sent to this reader
        self.bytes_out = 0
        self.result = "complete"
        self.span: Span | None = None  # a reconnection's span, when tracing is on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._send_all(send)
        except asyncio.CancelledError:
            reason = self.guard.absorb()
            if reason is None:
                raise
            self.result = reason.value
            if reason is Interrupt.SHUTDOWN:
                frame = self._terminal(self.next_seq, SHUTTING_DOWN)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.guard.close()
            await self.reader.aclose()
            self._record()

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        prefix = self.stream_id.encode() + b":"
        frames = [self.retry]
        if not self.join_retry:  # a reconnection may wait for its next event: send it now
            await send({"type": "http.response.body", "body": self.retry, "more_body": True})
            self.bytes_out += len(self.retry)
            frames = []
        async for batch in self.reader.batches():
            if not batch:
                continue
            last_seq, last = batch[-1]  # only a batch's last event can be terminal
            deltas = batch[:-1] if isinstance(last, End | Failure) else batch
            frame = b"data: %b\nid: %b%d\n\n"
            # /stream carries text only: parts beyond text keep their seq and are not sent.
            frames += [
                frame % (orjson.dumps(text), prefix, seq)
                for seq, text in deltas
                if isinstance(text, str)
            ]
            self.deltas += len(deltas)
            if isinstance(last, End | Failure):
                frames.append(self._terminal(last_seq, last))
                if isinstance(last, Failure):
                    self.result = _outcome(last)
            self.next_seq = last_seq + 1
            body = frames[0] if len(frames) == 1 else b"".join(frames)
            frames = []
            self.bytes_out += len(body)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        if frames:  # no event at all (cannot happen for a first reader; kept for safety)
            await send({"type": "http.response.body", "body": frames[0], "more_body": True})
        self.guard.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _terminal(self, seq: int, payload: End | Failure) -> bytes:
        next_id = f"{self.stream_id}:{seq}"
        data: dict[str, Any]
        if isinstance(payload, End):
            data, event = payload.summary(), "done"
        else:
            data, event = {"type": payload.type, "message": payload.message}, "error"
        return format_sse_event(data_str=orjson.dumps(data).decode(), event=event, id=next_id)

    def _record(self) -> None:
        reader = self.reader
        self.state.metrics.of_model(reader.model, reader.provider).bytes_out.inc(self.bytes_out)
        if (record := self.record) is not None:
            record.model, record.provider = reader.model, reader.provider
            record.outcome, record.bytes_out = self.result, self.bytes_out
            record.deltas = self.deltas
        if self.span is not None:
            Tracing.reconnection_ended(self.span, self.result, self.deltas, reader.replayed)


def _outcome(failure: Failure) -> str:
    return failure.type if failure.type == "cancelled" else outcome_of(failure.type)
