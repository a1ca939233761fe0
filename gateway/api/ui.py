"""The AI SDK's routes (SPEC §4.6): POST /ui/chat (`useChat`), POST /ui/completion
(`useCompletion`), and a chat's resume (GET /ui/chat/{id}/stream) and stop (POST
/ui/chat/{id}/stop).

Both POST routes parse their dialect's body (a chat into the translated path's neutral form,
tools and parts included; a completion into a `StreamRequest`), then admit and prime it
exactly like /stream. A chat's answer is then handed to a detached generation (SPEC §4.5),
registered under the chat's `id` for its owner, and the request becomes its first reader; a
resume is another reader, from the message's `start`. A completion (no chat id to resume by),
or a chat whose generation cannot be resumable (resume disabled, store down), is a plain relay
stream that ends when its client leaves.
"""

from __future__ import annotations

from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response

from gateway.api._common import json_body, parse_json, read_body, request_id
from gateway.api._serve import Serve, respond, serve_stream
from gateway.api.resume import LeaseAccounting, hand_over, owner_of
from gateway.auth import authenticate
from gateway.dialects.ui_messages import (
    UI_STREAM_HEADERS,
    UIChatRequest,
    UICompletionRequest,
    UIMessageEncoder,
    UIMessageResponse,
    UIReaderResponse,
    message_id_for,
)
from gateway.errors import GatewayError, NotFound
from gateway.lifecycle import StreamGuard
from gateway.limits import Lease
from gateway.models import to_chat_request
from gateway.observability import record_of
from gateway.relay import BuildRequest, Relay
from gateway.responses import new_stream_id
from gateway.resume import Generation, Reader
from gateway.resume.chats import ChatStreams
from gateway.routing import DirectRoute
from gateway.state import GatewayState, state_of
from gateway.sticky import conversation_of
from gateway.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["router"]

router = APIRouter(prefix="/ui", dependencies=[Depends(authenticate)], route_class=DirectRoute)


@router.post("/chat", openapi_extra=json_body(UIChatRequest), response_class=Response)
async def ui_chat(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.settings.max_body_bytes)
    chat = parse_json(body, UIChatRequest)
    translated = chat.translated()
    owner, chats = owner_of(request), chats_of(request)
    # A new message supersedes the chat's answer still running (its client has moved on):
    # cancel it before admission, so that it neither runs on unread nor holds a stream slot.
    await _cancel_running(state, chats, owner, chat.id)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        stream_id = new_stream_id()
        accounting = ChatAccounting(state, guard.lease, chats, owner, chat.id, stream_id)
        generation = await _start(state, accounting, relay)
        if generation is None:
            return _plain(request, state, guard, relay, stream_id, resumable=False)
        hand_over(guard)
        reader = generation.reader(-1)
        return _reader_response(request, state, reader, guard, stream_id)

    return await _serve(request, state, chat.model, translated.build, serve, chat.id)


@router.post("/completion", openapi_extra=json_body(UICompletionRequest), response_class=Response)
async def ui_completion(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.settings.max_body_bytes)
    completion = parse_json(body, UICompletionRequest)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        return _plain(request, state, guard, relay, new_stream_id(), resumable=None)

    stream_request = completion.to_stream_request()
    build = partial(to_chat_request, request=stream_request)
    return await _serve(request, state, stream_request.model, build, serve)


@router.get("/chat/{chat_id}/stream", response_class=Response)
async def ui_chat_resume(request: Request, chat_id: str) -> Response:
    """The chat's current message from `start`, then live; 204 when it has none running."""
    state, owner = state_of(request), owner_of(request)
    stream_id = await chats_of(request).find(owner, chat_id)
    if stream_id is None or await _has_ended(state, stream_id):
        return _no_content(request)
    reader = await state.generations.attach(stream_id, owner, -1)
    if reader is None:
        return _no_content(request)
    try:
        guard = StreamGuard(state.drain, request.receive, admit=False)
    except BaseException:
        await reader.aclose()
        raise
    state.metrics.reconnections.labels("resumed").inc()
    state.metrics.replayed_events.inc(reader.replayed)
    span = None if state.tracing is None else state.tracing.reconnection(request, reader.origin)
    return _reader_response(request, state, reader, guard, stream_id, span)


@router.post("/chat/{chat_id}/stop", response_class=Response)
async def ui_chat_stop(request: Request, chat_id: str) -> Response:
    """Cancel the chat's running answer for every reader (`abort`, then `[DONE]`); 404 when
    it has none (never started, ended, already stopped, or another key's)."""
    state, owner = state_of(request), owner_of(request)
    stream_id = await chats_of(request).find(owner, chat_id)
    if stream_id is None:
        raise NotFound("this chat has no running stream")
    await state.generations.cancel(stream_id, owner)
    return _no_content(request)


def chats_of(request: Request) -> ChatStreams:
    chats: ChatStreams = request.app.state.ui_chats
    return chats


class ChatAccounting(LeaseAccounting):
    """The generation's debts, and when it ends, its chat entry goes (resume then says 204)."""

    __slots__ = ("chat_id", "chats", "owner", "stream_id")

    def __init__(
        self,
        state: GatewayState,
        lease: Lease | None,
        chats: ChatStreams,
        owner: str,
        chat_id: str,
        stream_id: str,
    ) -> None:
        super().__init__(state, lease)
        self.chats, self.owner, self.chat_id, self.stream_id = chats, owner, chat_id, stream_id

    async def ended(
        self, relay: Relay, deltas: int, outcome: str, error: GatewayError | None
    ) -> None:
        try:
            await self.chats.forget(self.owner, self.chat_id, self.stream_id)
        finally:
            await super().ended(relay, deltas, outcome, error)


async def _start(state: GatewayState, chat: ChatAccounting, relay: Relay) -> Generation | None:
    """The chat's generation, registered before it starts (so that its end always finds the
    entry to drop); None when it cannot be resumable."""
    chats, owner, chat_id, stream_id = chat.chats, chat.owner, chat.chat_id, chat.stream_id
    await chats.remember(owner, chat_id, stream_id)
    try:
        generation = await state.generations.start(stream_id, owner, relay, chat)
    except BaseException:  # the client left (or shutdown) while Redis answered
        await chats.forget(owner, chat_id, stream_id)
        raise
    if generation is None:
        await chats.forget(owner, chat_id, stream_id)
    return generation


async def _cancel_running(
    state: GatewayState, chats: ChatStreams, owner: str, chat_id: str
) -> None:
    running = await chats.find(owner, chat_id)
    if running is not None:
        with suppress(GatewayError):  # it ended meanwhile, or the store is down: best effort
            await state.generations.cancel(running, owner)


async def _has_ended(state: GatewayState, stream_id: str) -> bool:
    """Whether the generation has ended: its chat entry is removed just after that, and may
    still be found for a Redis round trip (a finished message is not replayed: 204)."""
    generations = state.generations
    if (generation := generations.local.get(stream_id)) is not None:
        return generation.ended
    if generations.store is None or generations.ended_here(stream_id):
        return True
    try:
        meta = await generations.store.lookup(stream_id)
    except Exception:  # the store is failing: attach() finds out and says so
        return False
    return meta is None or meta.state != "running"


async def _serve(
    request: Request,
    state: GatewayState,
    model: str | None,
    build: BuildRequest,
    serve: Serve,
    chat: str | None = None,
) -> Response:
    plan = state.models.resolve(model, conversation_of(request.headers, chat))
    return await serve_stream(request, state, plan, build, serve)


def _plain(
    request: Request,
    state: GatewayState,
    guard: StreamGuard,
    relay: Relay,
    stream_id: str,
    resumable: bool | None,
) -> Response:
    headers = list(UI_STREAM_HEADERS)
    if resumable is not None:
        headers.append((b"x-stream-resumable", b"true" if resumable else b"false"))
    encoder = UIMessageEncoder(relay, stream_id)
    return respond(request, state, encoder, guard, headers, UIMessageResponse)


def _reader_response(
    request: Request,
    state: GatewayState,
    reader: Reader,
    guard: StreamGuard,
    stream_id: str,
    span: Span | None = None,  # a resume's span, when tracing is on
) -> UIReaderResponse:
    headers = [
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        (b"x-request-id", request_id(request).encode()),
        (b"x-stream-id", stream_id.encode()),
        (b"x-stream-resumable", b"true"),
        (b"x-gateway-model", reader.model.encode()),
        (b"x-gateway-provider", reader.provider.encode()),
        *UI_STREAM_HEADERS,
    ]
    record = record_of(request.scope)
    metrics = state.metrics

    def recorded(response: UIReaderResponse) -> None:
        metrics.of_model(reader.model, reader.provider).bytes_out.inc(response.bytes_out)
        if record is not None:
            record.model, record.provider = reader.model, reader.provider
            record.outcome, record.bytes_out = response.result, response.bytes_out
            record.deltas = response.deltas
        if span is not None:
            Tracing.reconnection_ended(span, response.result, response.deltas, reader.replayed)

    message_id = message_id_for(stream_id)
    return UIReaderResponse(reader, guard, message_id, headers, recorded)


def _no_content(request: Request) -> Response:
    if (record := record_of(request.scope)) is not None:
        record.status = 204
    return Response(status_code=204, headers={"X-Request-ID": request_id(request)})
