"""OpenAI-compatible chat: POST /v1/chat/completions (SPEC §4.3); models are in models.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from gateway.api._common import json_body, parse_json, read_body, request_id
from gateway.api._serve import admit_and_prime, respond
from gateway.auth import authenticate
from gateway.chat_completions import ChatCompletionEncoder, ChatCompletionRequest, completion_body
from gateway.errors import GatewayError
from gateway.observability import outcome_of, record_of
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])

_BODY = json_body(ChatCompletionRequest)


@router.post("/chat/completions", openapi_extra=_BODY, response_class=Response)
async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    body = parse_json(
        await read_body(request, state.settings.max_body_bytes), ChatCompletionRequest
    )
    body.check_supported()
    plan = state.models.resolve(body.model)
    guard, relay = await admit_and_prime(request, state, plan, body.builder())
    stream_id = new_stream_id()
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        encoder = ChatCompletionEncoder(relay, stream_id, include_usage)
        return respond(request, state, encoder, guard)
    collected: list[str] = []
    outcome, error = "complete", None
    try:
        await guard.run(_collect(relay, collected))
    except GatewayError as exc:
        outcome, error = outcome_of(exc.type), exc
        raise
    finally:
        guard.close()
        await relay.aclose()
        text = "".join(collected)
        state.ended(record_of(request.scope), relay, outcome, len(collected), len(text), error)
        await state.release(guard.lease, relay, len(collected))
    headers = {
        "X-Request-ID": request_id(request),
        "X-Gateway-Model": relay.model,
        "X-Gateway-Provider": relay.provider,
    }
    return JSONResponse(completion_body(relay, stream_id, text), headers=headers)


async def _collect(relay: Relay, into: list[str]) -> None:
    if relay.first:
        into.append(relay.first)
    async for delta in relay.rest:
        into.append(delta)
