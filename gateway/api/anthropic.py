"""Anthropic-compatible routes: POST /v1/messages, POST /v1/messages/count_tokens (SPEC §4.7)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from gateway.api._common import json_body, parse_json, read_body, request_id
from gateway.api._serve import collect, relay_headers, respond, serve_stream
from gateway.auth import authenticate
from gateway.dialects.anthropic import (
    AnthropicRoute,
    MessagesEncoder,
    MessagesRequest,
    forwarded_headers,
    message_body,
)
from gateway.errors import NotFound
from gateway.lifecycle import StreamGuard
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.state import state_of
from gateway.sticky import conversation_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", route_class=AnthropicRoute, dependencies=[Depends(authenticate)])

_BODY = json_body(MessagesRequest)


@router.post("/messages", openapi_extra=_BODY, response_class=Response)
async def messages(request: Request) -> Response:
    """Anthropic's Messages API; `?beta=true` (the SDKs' beta namespace) is the same route."""
    state = state_of(request)
    body = parse_json(await read_body(request, state.settings.max_body_bytes), MessagesRequest)
    body.check_supported()
    build = body.builder(forwarded_headers(request.headers))
    user_id = body.metadata.user_id if body.metadata is not None else None
    plan = state.models.resolve(body.model, conversation_of(request.headers, user_id))

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        stream_id, rid = new_stream_id(), request_id(request)
        if body.stream:
            encoder = MessagesEncoder(relay, stream_id, rid)
            return respond(request, state, encoder, guard, [(b"request-id", rid.encode())])
        collected = await collect(request, state, guard, relay)
        body_out = message_body(relay, stream_id, collected.text, collected.deltas)
        headers = {**relay_headers(request, relay), "request-id": rid}
        return JSONResponse(body_out, headers=headers)

    return await serve_stream(request, state, plan, build, serve)


@router.post("/messages/count_tokens")
async def count_tokens() -> Response:
    # Counting needs each provider's own tokenizer; a guess would be worse than an honest no.
    raise NotFound(
        "token counting is not available on this gateway: "
        "the usage of each response reports the tokens counted by its provider"
    )
