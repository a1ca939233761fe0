"""Anthropic-compatible routes: POST /v1/messages, POST /v1/messages/count_tokens (SPEC §4.7).

A model on an `anthropic` provider takes the native path (SPEC §4.9, gateway.native): the
body goes up as sent and the upstream's events come back as they were. Any other model takes
the translated path: the body is validated, read into the neutral form (tools, thinking,
images, documents, structured output: `gateway.dialects.anthropic_in`) and the answer framed
as Anthropic's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from gateway.api._common import json_body, json_object, read_body, request_id, validate
from gateway.api._native import (
    NativeMessagesEncoder,
    mixed,
    native_fields,
    native_plan,
    start_for,
    usable,
    whole_response,
)
from gateway.api._serve import collect, relay_headers, respond, serve_stream
from gateway.auth import authenticate
from gateway.dialects.anthropic import (
    AnthropicRoute,
    MessagesEncoder,
    MessagesRequest,
    forwarded_headers,
    message_body,
)
from gateway.dialects.translated import Translated
from gateway.errors import GatewayError, NotFound
from gateway.lifecycle import StreamGuard
from gateway.models import Attempt
from gateway.native import AnthropicNative
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.state import GatewayState, state_of
from gateway.sticky import conversation_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", route_class=AnthropicRoute, dependencies=[Depends(authenticate)])

_BODY = json_body(MessagesRequest)


@router.post("/messages", openapi_extra=_BODY, response_class=Response)
async def messages(request: Request) -> Response:
    """Anthropic's Messages API; `?beta=true` (the SDKs' beta namespace) is the same route."""
    state = state_of(request)
    data = json_object(await read_body(request, state.settings.max_body_bytes))
    metadata = data.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    conversation = conversation_of(request.headers, user_id if isinstance(user_id, str) else None)
    native = native_plan(state, data, AnthropicNative, conversation)
    if native is not None:
        return await _native(request, state, data, native)
    body = validate(MessagesRequest, data)
    build = body.translated(forwarded_headers(request.headers)).build
    user_id = body.metadata.user_id if body.metadata is not None else None
    plan = state.models.resolve(body.model, conversation_of(request.headers, user_id))

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        return await _translated(request, state, body, guard, relay)

    return await serve_stream(request, state, plan, build, serve)


async def _translated(
    request: Request, state: GatewayState, body: MessagesRequest, guard: StreamGuard, relay: Relay
) -> Response:
    stream_id, rid = new_stream_id(), request_id(request)
    if body.stream:
        encoder = MessagesEncoder(relay, stream_id, rid)
        return respond(request, state, encoder, guard, [(b"request-id", rid.encode())])
    collected = await collect(request, state, guard, relay)
    body_out = message_body(relay, stream_id, collected.blocks, collected.deltas)
    headers = {**relay_headers(request, relay), "request-id": rid}
    return JSONResponse(body_out, headers=headers)


async def _native(
    request: Request, state: GatewayState, data: dict[str, Any], plan: Sequence[Attempt]
) -> Response:
    fields = native_fields(data)
    headers = forwarded_headers(request.headers)
    beta = request.query_params.get("beta") == "true"
    native = AnthropicNative(data, fields.stream, headers, beta)
    # What a fallback of another dialect carries; read only when the plan has one.
    mixed_plan = mixed(plan, AnthropicNative)
    text_body, translated = _translatable(data, headers) if mixed_plan else (None, None)
    build = translated.build if translated is not None else None

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        if text_body is not None and not native.serves(relay.attempt):
            return await _translated(request, state, text_body, guard, relay)
        rid = request_id(request)
        if native.stream:
            encoder = NativeMessagesEncoder(relay, new_stream_id(), rid)
            return respond(request, state, encoder, guard, [(b"request-id", rid.encode())])
        collected = await collect(request, state, guard, relay)
        return whole_response(collected.text, {**relay_headers(request, relay), "request-id": rid})

    plan = usable(plan, AnthropicNative, build is not None)
    return await serve_stream(request, state, plan, build, serve, start_for(native, build))


def _translatable(
    data: dict[str, Any], headers: dict[str, str]
) -> tuple[MessagesRequest | None, Translated | None]:
    try:
        body = validate(MessagesRequest, data)
        return body, body.translated(headers)
    except GatewayError:
        return None, None


@router.post("/messages/count_tokens")
async def count_tokens() -> Response:
    # Counting needs each provider's own tokenizer; a guess would be worse than an honest no.
    raise NotFound(
        "token counting is not available on this gateway: "
        "the usage of each response reports the tokens counted by its provider"
    )
