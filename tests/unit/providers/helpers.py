"""Drive an adapter through respx with a byte stream cut however the test likes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import respx

from gateway.errors import GatewayError
from gateway.providers import PROVIDERS
from gateway.providers._http import build_client
from gateway.providers.base import ChatMessage, ChatRequest, Delta, Provider, StreamOutcome
from gateway.settings import load_settings
from tests.conftest import CANARY_KEY

CONTENT_TYPES = {
    "openai": "text/event-stream",
    "anthropic": "text/event-stream; charset=utf-8",
    "gemini": "text/event-stream",
    "ollama": "application/x-ndjson",
}
URLS = {
    "openai": "https://upstream.test/v1/chat/completions",
    "anthropic": "https://upstream.test/v1/messages",
    "gemini": "https://upstream.test/v1beta/models/m-1:streamGenerateContent?alt=sse",
    "ollama": "https://upstream.test/api/chat",
}
BASE_URLS = {
    "openai": "https://upstream.test/v1",
    "anthropic": "https://upstream.test",
    "gemini": "https://upstream.test",
    "ollama": "https://upstream.test",
}


def make_adapter(kind: str, **config: Any) -> Provider:
    options = {"type": kind, "base_url": BASE_URLS[kind], "api_key": CANARY_KEY, **config}
    settings = load_settings(providers={"p": options})
    provider_config = settings.providers["p"]
    # httpx's stock transport, which respx intercepts; the gateway's own transport is
    # exercised on real sockets in tests/e2e.
    return PROVIDERS[kind](provider_config, build_client(provider_config, mockable=True))


def chat(model: str = "m-1", **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", "hi"),), **fields)


async def pieces_stream(pieces: Sequence[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def reply(
    pieces: Sequence[bytes], content_type: str, status: int = 200, **headers: str
) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers={"content-type": content_type, **headers},
            content=pieces_stream(pieces),
        )

    return respond


async def collect(
    adapter: Provider, request: ChatRequest | None = None
) -> tuple[list[str], StreamOutcome, GatewayError | None]:
    """Every text delta the adapter yields, its outcome, and the error it ended with (if any)
    (`collect_all` keeps the parts beyond text too)."""
    deltas, outcome, error = await collect_all(adapter, request)
    return [delta for delta in deltas if isinstance(delta, str)], outcome, error


async def collect_all(
    adapter: Provider, request: ChatRequest | None = None
) -> tuple[list[Delta], StreamOutcome, GatewayError | None]:
    """Every delta the adapter yields (text and parts), its outcome, and its error if any.

    The adapter yields batches (the deltas of one network read); each is checked against the
    contract (never empty, no empty delta) and flattened here.
    """
    outcome = StreamOutcome()
    deltas: list[Delta] = []
    try:
        async for batch in adapter.stream(request or chat(), outcome):
            assert batch, "an adapter yielded an empty batch"
            assert all(batch), "an adapter yielded an empty delta"
            deltas += batch
    except GatewayError as exc:
        return deltas, outcome, exc
    return deltas, outcome, None


def mock(
    router: respx.MockRouter, kind: str, pieces: Sequence[bytes], status: int = 200, **h: str
) -> respx.Route:
    return router.post(URLS[kind]).mock(side_effect=reply(pieces, CONTENT_TYPES[kind], status, **h))
