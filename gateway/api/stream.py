"""GET and POST /stream: validate, resolve, prime the first delta, then stream (SPEC §4.1)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from gateway.api._common import (
    json_body,
    parse_json,
    query_parameters,
    read_body,
    validate,
)
from gateway.api._serve import respond, serve_stream
from gateway.api.resume import parse_last_event_id, reconnect, start_resumable
from gateway.auth import authenticate
from gateway.errors import InvalidRequest
from gateway.lifecycle import StreamGuard
from gateway.models import to_chat_request
from gateway.relay import Relay
from gateway.responses import FORMATS, new_stream_id
from gateway.routing import DirectRoute
from gateway.schemas import StreamRequest
from gateway.state import GatewayState, state_of
from gateway.sticky import conversation_of

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(authenticate)], route_class=DirectRoute)

_STREAM_BODY = json_body(StreamRequest)
_FORMAT = {"name": "format", "in": "query", "schema": {"enum": ["text", "sse", "ndjson"]}}
# `messages` is a list of objects: a body's job (POST /stream), not a query string's.
_STREAM_QUERY = query_parameters(StreamRequest, skip=("messages",))
_STREAM_QUERY["parameters"].append(_FORMAT)


@router.post(
    "/stream", openapi_extra={**_STREAM_BODY, "parameters": [_FORMAT]}, response_class=Response
)
async def stream_post(request: Request) -> Response:
    state = state_of(request)
    if reconnection := await _reconnection(request):
        return reconnection
    fmt = _format(request, allowed=("format",))
    body = await read_body(request, state.settings.max_body_bytes)
    return await relay_response(request, state, parse_json(body, StreamRequest), fmt)


@router.get("/stream", openapi_extra=_STREAM_QUERY, response_class=Response)
async def stream_get(request: Request) -> Response:
    state = state_of(request)
    if reconnection := await _reconnection(request):
        return reconnection
    fmt = _format(request, allowed=(*StreamRequest.model_fields, "format", "token"))
    stream_request = validate(StreamRequest, _query_fields(request))
    return await relay_response(request, state, stream_request, fmt)


async def _reconnection(request: Request) -> Response | None:
    """A reconnect never starts a second generation (nobody pays twice): it resumes a
    resumable stream (SPEC §4.5), or gets 204."""
    last_id = request.headers.get("last-event-id")
    if last_id is None:
        return None
    stream_id, after = parse_last_event_id(last_id)
    return await reconnect(request, stream_id, after)


def _format(request: Request, allowed: tuple[str, ...]) -> str:
    unknown = [key for key in request.query_params if key not in allowed]
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    chosen = request.query_params.get("format")
    if chosen is not None:
        if chosen not in FORMATS:
            raise InvalidRequest("format must be one of text, sse, ndjson")
        return chosen
    accept = request.headers.get("accept", "")
    if "text/event-stream" in accept:
        return "sse"
    if "application/x-ndjson" in accept:
        return "ndjson"
    return "text"


def _query_fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in set(request.query_params) - {"format", "token"}:
        values = request.query_params.getlist(key)
        if key == "stop":
            fields[key] = values if len(values) > 1 else values[0]
        elif len(values) > 1:
            raise InvalidRequest(f"query parameter {key!r} given more than once")
        else:
            fields[key] = values[0]
    return fields


async def relay_response(
    request: Request, state: GatewayState, body: StreamRequest, fmt: str
) -> Response:
    if body.resumable and fmt != "sse":
        raise InvalidRequest("only the sse format is resumable (text and ndjson have no ids)")
    plan = state.models.resolve(body.model, conversation_of(request.headers))

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        if body.resumable:
            return await start_resumable(request, state, guard, relay, new_stream_id())
        return respond(request, state, FORMATS[fmt](relay, new_stream_id()), guard)

    return await serve_stream(request, state, plan, partial(to_chat_request, request=body), serve)
