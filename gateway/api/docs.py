"""/docs, /redoc and /openapi.json, behind the gateway key like every other route (SPEC §7).

FastAPI's own doc routes ignore router dependencies, so the app turns them off and these
serve the same pages with `authenticate` in front. With keys configured, a browser opening
/docs directly gets the 401: fetch the schema with the key
(`curl -H 'Authorization: Bearer …' /openapi.json`), or open the docs on a gateway without keys.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from gateway.auth import authenticate

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(authenticate)], include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - docs")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - ReDoc")
