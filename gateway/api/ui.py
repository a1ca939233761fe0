"""The AI SDK's routes: POST /ui/chat (`useChat`) and POST /ui/completion (`useCompletion`).

They parse their dialect's body into a `StreamRequest`, then admit, prime and relay exactly
like /stream (SPEC §4.6); only the encoder, the response class and one header differ.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Request, Response

from gateway.api._common import json_body, parse_json, read_body, request_id
from gateway.api._serve import admit_and_prime, respond
from gateway.auth import authenticate
from gateway.models import to_chat_request
from gateway.observability import record_of
from gateway.responses import new_stream_id
from gateway.schemas import StreamRequest
from gateway.state import GatewayState, state_of
from gateway.ui_messages import (
    UI_STREAM_HEADERS,
    UIChatRequest,
    UICompletionRequest,
    UIMessageEncoder,
    UIMessageResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/ui", dependencies=[Depends(authenticate)])


@router.post("/chat", openapi_extra=json_body(UIChatRequest), response_class=Response)
async def ui_chat(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.settings.max_body_bytes)
    chat = parse_json(body, UIChatRequest)
    return await _relay(request, state, chat.to_stream_request())


@router.post("/completion", openapi_extra=json_body(UICompletionRequest), response_class=Response)
async def ui_completion(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.settings.max_body_bytes)
    completion = parse_json(body, UICompletionRequest)
    return await _relay(request, state, completion.to_stream_request())


@router.get("/chat/{chat_id}/stream", response_class=Response)
async def ui_chat_resume(request: Request, chat_id: str) -> Response:
    """`useChat({resume: true})` asks here on mount. No stream is resumable yet (the
    generations of SPEC §4.5 are not in this build), so there is never one to resume: 204,
    which the SDK takes as "nothing to resume"."""
    if (record := record_of(request.scope)) is not None:
        record.outcome = "rejected"
    return Response(status_code=204, headers={"X-Request-ID": request_id(request)})


async def _relay(request: Request, state: GatewayState, stream_request: StreamRequest) -> Response:
    plan = state.models.resolve(stream_request.model)
    build = partial(to_chat_request, request=stream_request)
    guard, relay = await admit_and_prime(request, state, plan, build)
    encoder = UIMessageEncoder(relay, new_stream_id())
    return respond(request, state, encoder, guard, UIMessageResponse, UI_STREAM_HEADERS)
