"""OpenAI-compatible chat: POST /v1/chat/completions (SPEC §4.3); models are in models.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from gateway.api._common import json_body, parse_json, read_body
from gateway.api._serve import collect, relay_headers, respond, serve_stream
from gateway.auth import authenticate
from gateway.dialects.openai import (
    ChatCompletionEncoder,
    ChatCompletionRequest,
    OpenAIRoute,
    completion_body,
)
from gateway.lifecycle import StreamGuard
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.state import state_of
from gateway.sticky import conversation_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authenticate)])

_BODY = json_body(ChatCompletionRequest)


@router.post("/chat/completions", openapi_extra=_BODY, response_class=Response)
async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    body = parse_json(
        await read_body(request, state.settings.max_body_bytes), ChatCompletionRequest
    )
    body.check_supported()
    conversation = conversation_of(request.headers, body.prompt_cache_key or body.user)
    plan = state.models.resolve(body.model, conversation)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        stream_id = new_stream_id()
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            encoder = ChatCompletionEncoder(relay, stream_id, include_usage)
            return respond(request, state, encoder, guard)
        collected = await collect(request, state, guard, relay)
        body_out = completion_body(relay, stream_id, collected.text)
        return JSONResponse(body_out, headers=relay_headers(request, relay))

    return await serve_stream(request, state, plan, body.builder(), serve)
