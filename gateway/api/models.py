"""GET /v1/models and GET /v1/models/{name} (SPEC §4.3), in OpenAI's shapes.

A caller sees the models it can use: those its key allows, on providers that have their key.
Anything else is a 404 on retrieval, so a key learns nothing about models it may not use.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.auth import authenticate, key_of
from gateway.dialects.openai import OpenAIRoute
from gateway.errors import UnknownModel
from gateway.state import GatewayState, state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authenticate)])


@router.get("/models")
async def list_models(request: Request) -> JSONResponse:
    state, key = state_of(request), key_of(request)
    names = [name for name in state.models.available() if key is None or key.may_use(name)]
    return JSONResponse({"object": "list", "data": [_model(state, name) for name in names]})


@router.get("/models/{name:path}")
async def retrieve_model(request: Request, name: str) -> JSONResponse:
    # The whole rest of the path: the `{name:path}` pattern stops before a trailing newline
    # (its `$` matches there), which answered `/v1/models/%0A` as the default model.
    name = request.scope["path"].split("/models/", 1)[1]
    if not name:
        raise UnknownModel("unknown model ''", model=name)
    state, key = state_of(request), key_of(request)
    if key is not None and not key.may_use(name):
        raise UnknownModel(f"unknown model {name!r}", model=name)
    state.models.resolve(name)  # 404 unknown_model / model_unavailable
    return JSONResponse(_model(state, name))


def _model(state: GatewayState, name: str) -> dict[str, Any]:
    entry = state.settings.models.get(name)
    # An entry of several deployments is owned by its first one's provider.
    owner = entry.all_deployments()[0].provider if entry is not None else name.partition("/")[0]
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}
