"""Gateway API keys (SPEC §7): who may call, and which models they may use.

Keys are configured only as SHA-256 digests. A client sends its key as `Authorization: Bearer
<key>` or `X-API-Key: <key>`, and in no other way: a key in the query string or in Basic auth
is not looked at (so it is a missing key, 401). The digest of what was sent is compared with
every configured digest in constant time, all of them every time, so the comparison says
nothing about which key came close. With no keys configured the gateway is open.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from gateway.errors import ModelNotAllowed, Unauthorized
from gateway.settings import KeyConfig

__all__ = ["KEY_SCOPE", "GatewayKey", "KeyRing", "authenticate", "hash_key"]

KEY_SCOPE = "gateway.key"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GatewayKey:
    name: str
    digest: bytes
    models: frozenset[str] | None
    rpm: int | None
    tpm: int | None
    max_concurrent_streams: int | None
    budget: float | None = None  # spend per budget_period (SPEC §7)
    budget_period: str = "month"

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check_model(self, model: str) -> None:
        if not self.may_use(model):
            raise ModelNotAllowed(f"this key may not use model {model!r}", model=model)


class KeyRing:
    def __init__(self, keys: dict[str, KeyConfig]) -> None:
        self.keys = [
            GatewayKey(
                name,
                bytes.fromhex(key.sha256),
                frozenset(key.models) if key.models is not None else None,
                key.rpm,
                key.tpm,
                key.max_concurrent_streams,
                key.budget,
                key.budget_period,
            )
            for name, key in keys.items()
        ]

    @property
    def open(self) -> bool:
        return not self.keys

    def identify(self, authorization: str | None, api_key: str | None) -> GatewayKey:
        sent = _bearer(authorization) or api_key
        if not sent:
            raise Unauthorized("a gateway key is required (Authorization: Bearer or X-API-Key)")
        digest = hashlib.sha256(sent.encode()).digest()
        found = None
        for key in self.keys:  # no early exit: every digest is compared every time
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise Unauthorized("the gateway key is not valid")
        return found


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def authenticate(request: Request) -> None:
    """Router dependency: runs before the body is read or validated."""
    ring: KeyRing = request.app.state.keys
    if ring.open:
        return
    headers = request.headers
    authorization, api_key = headers.get("authorization"), headers.get("x-api-key")
    token = _event_source_token(request)
    if token is not None and not (authorization or api_key):
        reconnect = "last-event-id" in headers or request.url.path != "/stream"
        found = request.app.state.tokens.verify(token, ring.keys, reconnect)
        if found is None:
            raise Unauthorized("the stream token is not valid (or has expired)")
        key = found
    else:
        key = ring.identify(authorization, api_key)
    request.scope[KEY_SCOPE] = key
    record = request.scope.get("gateway.record")
    if record is not None:
        record.key = key.name


def _event_source_token(request: Request) -> str | None:
    """`?token=` counts only where EventSource reads: GET /stream and GET /stream/{id}."""
    if request.method != "GET" or not (
        request.url.path == "/stream" or request.url.path.startswith("/stream/")
    ):
        return None
    return request.query_params.get("token")


def key_of(request: Request) -> GatewayKey | None:
    key: GatewayKey | None = request.scope.get(KEY_SCOPE)
    return key
