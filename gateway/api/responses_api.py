"""OpenAI's Responses API: POST /v1/responses and GET /v1/responses/{id} (SPEC §4.10).

A model on an `openai` provider with `api = "responses"` takes the native path
(`gateway.native.responses`): the body goes up as sent and the upstream's events come back as
they were. Every other model takes the translated path (`gateway.dialects.responses`), and the
gateway keeps stored responses' conversations itself. Ownership is the gateway's on both: each
response id is recorded with the key that made it (`gateway.response_ids`), and a
`previous_response_id` that is unknown, expired, unstored or another key's is refused as
OpenAI refuses it, before anything reaches the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints

from gateway.api._common import json_body, json_object, read_body, request_id, validate
from gateway.api._native import _Relayed, start_for, usable, whole_response
from gateway.api._serve import collect, relay_headers, respond, serve_stream
from gateway.auth import authenticate, key_of
from gateway.dialects.openai import OpenAIRoute
from gateway.dialects.responses import (
    ResponsesEncoder,
    output_items,
    parse_request,
    response_object,
)
from gateway.errors import GatewayError, NotFound, UpstreamProtocolError
from gateway.lifecycle import StreamGuard
from gateway.models import Attempt
from gateway.native import MAX_BODY_BYTES
from gateway.native.responses import ResponsesNative, next_sequence_number
from gateway.providers._http import body_chunks, open_stream
from gateway.providers.openai import OpenAIProvider
from gateway.relay import Relay
from gateway.response_ids import ResponseIds
from gateway.responses import new_stream_id
from gateway.state import state_of
from gateway.sticky import conversation_of

__all__ = ["PreviousResponseNotFound", "ResponsesFields", "router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authenticate)])

ResponseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,256}$")]


class ResponsesFields(BaseModel):
    """The only fields of a Responses body the gateway reads (the rest goes up as is)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,256}$")]
    stream: StrictBool = False
    store: StrictBool | None = None  # absent: stored, as OpenAI does
    previous_response_id: ResponseId | None = None
    prompt_cache_key: str | None = None
    user: str | None = None


class PreviousResponseNotFound(GatewayError):
    """OpenAI's own answer for a response it cannot continue (an unknown, expired,
    unstored or another key's id)."""

    status, type = 400, "invalid_request_error"
    code, param = "previous_response_not_found", "previous_response_id"


@router.post("/responses", openapi_extra=json_body(ResponsesFields), response_class=Response)
async def create_response(request: Request) -> Response:
    state = state_of(request)
    data = json_object(await read_body(request, state.settings.max_body_bytes))
    fields = validate(ResponsesFields, data)
    conversation = conversation_of(request.headers, fields.prompt_cache_key or fields.user)
    plan = state.models.resolve(fields.model, conversation)
    key = key_of(request)
    if key is not None:
        key.check_model(plan[0].model)
    ids, owner = response_ids(request), owner_of(request)
    history: list[dict[str, Any]] = []
    previous = fields.previous_response_id
    if previous is not None:
        stored = await ids.find(previous, owner)
        if stored is None or (stored.items == b"" and not ResponsesNative.serves(plan[0])):
            raise PreviousResponseNotFound(f"Previous response with id '{previous}' not found.")
        if stored.items:  # made on the translated path: the gateway holds the conversation
            history = _history(stored.items)
    if ResponsesNative.serves(plan[0]):
        return await _native(request, data, fields, plan, history)
    return await _translated(request, data, plan, history)


async def _native(
    request: Request,
    data: dict[str, Any],
    fields: ResponsesFields,
    plan: Sequence[Attempt],
    history: list[dict[str, Any]],
) -> Response:
    """The body up as sent; the upstream's events back as they came."""
    state, ids, owner = state_of(request), response_ids(request), owner_of(request)
    if history:  # the upstream never saw the previous response: it gets the conversation
        data = {key: value for key, value in data.items() if key != "previous_response_id"}
        data["input"] = _for_openai(history) + _as_items(data.get("input"))

    def remember(response_id: str, provider: str) -> None:
        ids.remember(response_id, owner, provider)

    native = ResponsesNative(data, fields.stream, None if fields.store is False else remember)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        if native.stream:
            encoder = NativeResponsesEncoder(relay, new_stream_id(), native)
            return respond(request, state, encoder, guard)
        collected = await collect(request, state, guard, relay)
        return whole_response(collected.text, relay_headers(request, relay))

    plan = usable(plan, ResponsesNative, translatable=False)
    return await serve_stream(request, state, plan, None, serve, start_for(native, None))


async def _translated(
    request: Request, data: dict[str, Any], plan: Sequence[Attempt], history: list[dict[str, Any]]
) -> Response:
    """Through the parts model to any other upstream; the gateway keeps the conversation of a
    stored response (input and output items) for `previous_response_id`."""
    state, ids, owner = state_of(request), response_ids(request), owner_of(request)
    body = parse_request(data, history)
    dropped = ",".join(body.dropped)

    def store(response_id: str, response: dict[str, Any]) -> None:
        record = orjson.dumps({"input": body.items, "response": response})
        ids.remember(response_id, owner, "", record)

    stored = store if body.store else None

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        stream_id = new_stream_id()
        extra = [(b"x-gateway-dropped-tools", dropped.encode())] if dropped else []
        if body.stream:
            encoder = ResponsesEncoder(relay, stream_id, body, stored)
            return respond(request, state, encoder, guard, extra_headers=extra)
        collected = await collect(request, state, guard, relay)
        output = output_items(collected.blocks, body.names, stream_id)
        response = response_object(body, f"resp_{stream_id}", relay, output)
        if stored is not None:
            stored(response["id"], response)
        headers = relay_headers(request, relay)
        if dropped:
            headers["X-Gateway-Dropped-Tools"] = dropped
        return JSONResponse(response, headers=headers)

    return await serve_stream(request, state, plan, body.builder(), serve)


def _history(record: bytes) -> list[dict[str, Any]]:
    """A stored conversation: the response's input, then its output."""
    stored = orjson.loads(record)
    return [*stored["input"], *stored["response"]["output"]]


def _for_openai(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation the gateway made, for OpenAI: without the gateway's item ids (OpenAI
    would look them up) and without reasoning items, whose signatures are other upstreams'."""
    return [
        {key: value for key, value in item.items() if key != "id"}
        for item in history
        if item.get("type") != "reasoning"
    ]


def _as_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value if isinstance(value, list) else []


@router.get("/responses/{response_id:path}", response_class=Response)
async def retrieve_response(request: Request, response_id: str) -> Response:
    """The owner's stored response, as the upstream that holds it answers; 404 for anyone
    else (and for an id the gateway does not know: it never asks an upstream about those)."""
    # The whole rest of the path, as for /v1/models/{name}: the pattern's `$` stops before a
    # trailing newline, and a plain `{response_id}` would redirect `…/responses/%2F`.
    response_id = request.scope["path"].split("/responses/", 1)[1]
    state = state_of(request)
    stored = await response_ids(request).find(response_id, owner_of(request))
    if stored is not None and stored.items:  # made on the translated path: the gateway's own
        response = orjson.loads(stored.items)["response"]
        return JSONResponse(response, headers={"X-Request-ID": request_id(request)})
    registered = state.providers.get(stored.provider) if stored is not None else None
    if registered is None or not isinstance(registered.adapter, OpenAIProvider):
        raise NotFound(f"no response with id {response_id!r}")
    adapter = registered.adapter
    request_out = adapter.stored_response_request(response_id)
    body = bytearray()
    async with open_stream(adapter.client, request_out, content_type="json") as upstream:
        async for chunk in body_chunks(upstream):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise UpstreamProtocolError(f"the upstream's answer is over {MAX_BODY_BYTES} bytes")
    headers = {"X-Request-ID": request_id(request), "X-Gateway-Provider": registered.name}
    return Response(bytes(body), media_type="application/json", headers=headers)


def response_ids(request: Request) -> ResponseIds:
    ids: ResponseIds = request.app.state.response_ids
    return ids


def owner_of(request: Request) -> str:
    """Who a response belongs to: the gateway key's name ("" when the gateway is open)."""
    key = key_of(request)
    return key.name if key is not None else ""


class NativeResponsesEncoder(_Relayed):
    """The upstream's events as they came; a failure after them is the gateway's own
    `response.failed`, numbered after the last event relayed (never `response.completed`)."""

    media_type = "text/event-stream"

    def __init__(self, relay: Relay, stream_id: str, native: ResponsesNative) -> None:
        super().__init__(relay, stream_id)
        self.native = native
        self.created_at = int(time.time())

    def error_frame(self, error: GatewayError) -> bytes:
        native = self.native
        response = {
            "id": native.response_id or f"resp_{self.stream_id}",
            "object": "response",
            "created_at": self.created_at,
            "status": "failed",
            "error": {"code": error.type, "message": error.message},
            "incomplete_details": None,
            "model": self.relay.model,
            "output": [],
            "parallel_tool_calls": native.data.get("parallel_tool_calls", True),
            "tool_choice": native.data.get("tool_choice", "auto"),
            "tools": native.data.get("tools", []),
        }
        event = {
            "type": "response.failed",
            "sequence_number": next_sequence_number(native.last_event),
            "response": response,
        }
        return b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"
