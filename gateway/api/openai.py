"""OpenAI-compatible chat: POST /v1/chat/completions (SPEC §4.3); models are in models.py.

A model on an `openai` provider takes the native path (SPEC §4.9, gateway.native): the body
goes up as sent and the upstream's chunks come back as they were. Any other model takes the
translated path: the body is validated, read into the neutral form (tools, reasoning, images,
structured output: `gateway.dialects.openai_in`) and the answer framed as OpenAI's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from gateway.api._common import json_body, json_object, read_body, validate
from gateway.api._native import (
    NativeChatEncoder,
    mixed,
    native_fields,
    native_plan,
    start_for,
    usable,
    whole_response,
)
from gateway.api._serve import collect, relay_headers, respond, serve_stream
from gateway.auth import authenticate
from gateway.dialects.openai import (
    ChatCompletionEncoder,
    ChatCompletionRequest,
    OpenAIRoute,
    completion_body,
)
from gateway.dialects.translated import Translated
from gateway.errors import BadRequest, GatewayError
from gateway.lifecycle import StreamGuard
from gateway.models import Attempt
from gateway.native import OpenAINative
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.state import GatewayState, state_of
from gateway.sticky import conversation_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authenticate)])

_BODY = json_body(ChatCompletionRequest)


@router.post("/chat/completions", openapi_extra=_BODY, response_class=Response)
async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    data = json_object(await read_body(request, state.settings.max_body_bytes))
    key = data.get("prompt_cache_key") or data.get("user")
    conversation = conversation_of(request.headers, key if isinstance(key, str) else None)
    native = native_plan(state, data, OpenAINative, conversation)
    if native is not None:
        return await _native(request, state, data, native)
    body = validate(ChatCompletionRequest, data)
    translated = body.translated()
    conversation = conversation_of(request.headers, body.prompt_cache_key or body.user)
    plan = state.models.resolve(body.model, conversation)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        return await _translated(request, state, body, guard, relay)

    return await serve_stream(request, state, plan, translated.build, serve)


async def _translated(
    request: Request,
    state: GatewayState,
    body: ChatCompletionRequest,
    guard: StreamGuard,
    relay: Relay,
) -> Response:
    stream_id = new_stream_id()
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        encoder = ChatCompletionEncoder(relay, stream_id, include_usage)
        return respond(request, state, encoder, guard)
    collected = await collect(request, state, guard, relay)
    body_out = completion_body(relay, stream_id, collected.blocks)
    return JSONResponse(body_out, headers=relay_headers(request, relay))


async def _native(
    request: Request, state: GatewayState, data: dict[str, Any], plan: Sequence[Attempt]
) -> Response:
    fields = native_fields(data)
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options must be an object")
    native = OpenAINative(data, fields.stream)
    # What a fallback of another dialect carries; read only when the plan has one (the
    # translated request's validation is the native path's biggest per-request cost).
    text_body, translated = _translatable(data) if mixed(plan, OpenAINative) else (None, None)
    build = translated.build if translated is not None else None

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        if text_body is not None and not native.serves(relay.attempt):
            return await _translated(request, state, text_body, guard, relay)
        if native.stream:
            encoder = NativeChatEncoder(relay, new_stream_id(), native.wants_usage)
            return respond(request, state, encoder, guard)
        collected = await collect(request, state, guard, relay)
        return whole_response(collected.text, relay_headers(request, relay))

    plan = usable(plan, OpenAINative, build is not None)
    return await serve_stream(request, state, plan, build, serve, start_for(native, build))


def _translatable(
    data: dict[str, Any],
) -> tuple[ChatCompletionRequest | None, Translated | None]:
    try:
        body = validate(ChatCompletionRequest, data)
        return body, body.translated()
    except GatewayError:
        return None, None
