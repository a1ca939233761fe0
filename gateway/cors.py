"""CORS for the official browser SDKs (SPEC §7).

Starlette's middleware allows a fixed list of request headers, but the SDKs send whole
families that grow with each release (openai-node's `x-stainless-*`, Anthropic's
`anthropic-*`). Those families are allowed by prefix; anything else still needs to be listed.
Header names carry no authority (the key does, and origins stay an exact list), so allowing a
family opens nothing that the key does not already guard.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp

__all__ = ["EXPOSED_HEADERS", "REQUEST_HEADERS", "REQUEST_HEADER_PREFIXES", "SDKFriendlyCORS"]

REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "Last-Event-ID",
    "X-Request-ID",
    "Accept",
]
REQUEST_HEADER_PREFIXES = ("x-stainless-", "anthropic-")
EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Gateway-Model",
    "X-Gateway-Provider",
    "X-Stream-ID",
    "X-Stream-Resumable",
    "Retry-After",
]


class SDKFriendlyCORS(CORSMiddleware):
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        # Exact origins only, and never credentials (keys travel in headers, not cookies).
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=REQUEST_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        requested = request_headers.get("access-control-request-headers")
        names = [name.strip().lower() for name in (requested or "").split(",") if name.strip()]
        if not names or not all(map(self._allowed, names)):
            return super().preflight_response(request_headers)  # listed, or refused as before
        others = request_headers.mutablecopy()
        del others["access-control-request-headers"]
        response = super().preflight_response(Headers(raw=others.raw))
        if response.status_code == 200:
            allowed = sorted(set(self.allow_headers) | set(names))
            response.headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
        return response

    def _allowed(self, name: str) -> bool:
        return name in self.allow_headers or name.startswith(REQUEST_HEADER_PREFIXES)
