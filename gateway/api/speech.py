"""POST /v1/audio/speech (SPEC §4.3): the upstream's audio bytes, relayed as they arrive.

Served by `openai` providers (OpenAI and the compatible servers that speak text-to-speech);
a model on any other provider is 404 `model_unavailable`, as for a provider without a key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.api._common import json_body, json_object, read_body, validate
from gateway.api._native import _Relayed, start_for, usable
from gateway.api._serve import respond, serve_stream
from gateway.auth import authenticate
from gateway.dialects.openai import OpenAIRoute
from gateway.errors import ModelUnavailable
from gateway.lifecycle import StreamGuard
from gateway.native.speech import Speech
from gateway.relay import Relay
from gateway.responses import new_stream_id
from gateway.schemas import ModelName
from gateway.state import state_of

__all__ = ["SpeechFields", "router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authenticate)])


class SpeechFields(BaseModel):
    """What the gateway reads of a speech body (the rest goes up as sent)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: ModelName
    input: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]


@router.post("/audio/speech", openapi_extra=json_body(SpeechFields), response_class=Response)
async def speech(request: Request) -> Response:
    state = state_of(request)
    data = json_object(await read_body(request, state.settings.max_body_bytes))
    fields = validate(SpeechFields, data)
    plan = usable(state.models.resolve(fields.model), Speech, translatable=False)
    if not plan:
        raise ModelUnavailable(
            f"model {fields.model!r} has no speech: only 'openai' providers serve /v1/audio/speech",
            model=fields.model,
        )
    speech = Speech(data)

    async def serve(guard: StreamGuard, relay: Relay) -> Response:
        encoder = AudioEncoder(relay, new_stream_id())
        encoder.media_type = speech.media_type
        return respond(request, state, encoder, guard)

    return await serve_stream(request, state, plan, None, serve, start_for(speech, None))


class AudioEncoder(_Relayed):
    """The upstream's bytes, each read as it came; no frames, no in-band error (a failure
    truncates the body)."""
