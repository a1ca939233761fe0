"""Google Gemini `streamGenerateContent?alt=sse`.

Each event is a whole `GenerateContentResponse`: the text is the first candidate's parts
(parts with `thought: true` are reasoning, not answer text). There is no end sentinel: the
stream is complete when a chunk carried `finishReason` (or the prompt was blocked, which comes
as `promptFeedback.blockReason` with no candidates). `usageMetadata` may appear on any chunk;
the last one wins. Errors inside the stream come as `{"error": {code, message, status}}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.providers._http import (
    HTTPProviderConfig,
    in_stream_error,
    open_stream,
    parse_event,
)
from gateway.providers._sse import SSEDecoder
from gateway.providers.base import ChatRequest, StreamOutcome, Usage

__all__ = ["GeminiConfig", "GeminiProvider"]


class GeminiConfig(HTTPProviderConfig):
    type: Literal["gemini"] = "gemini"
    base_url: str = "https://generativelanguage.googleapis.com"


class GeminiProvider:
    def __init__(self, config: GeminiConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self._client = client

    def build_request(self, request: ChatRequest) -> httpx.Request:
        # The model lands in the URL path: quote it whole so that no client-chosen name can
        # walk the path ("../") on a host that receives our key.
        model = quote(request.model, safe="")
        url = f"{self.config.base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse"
        headers = {
            "x-goog-api-key": self.config.require_key(),
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            **self.config.headers,
        }
        return self._client.build_request("POST", url, json=_body(request), headers=headers)

    async def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[str]:
        http_request = self.build_request(request)
        async with open_stream(
            self._client, self.config, http_request, content_type="event-stream"
        ) as response:
            decoder = SSEDecoder()
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    for text in _texts(parse_event(event.data), outcome):
                        yield text
            if outcome.finish_reason is None:
                raise UpstreamProtocolError("the upstream stream ended without a finishReason")

    async def aclose(self) -> None:
        return None


def _body(request: ChatRequest) -> dict[str, Any]:
    contents = [
        {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
        for m in request.messages
    ]
    body: dict[str, Any] = {"contents": contents}
    if request.system is not None:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("max_tokens", "maxOutputTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
    ):
        value = getattr(request, ours)
        if value is not None:
            config[theirs] = value
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if config:
        body["generationConfig"] = config
    body.update(request.extra)
    return body


def _texts(chunk: Any, outcome: StreamOutcome) -> list[str]:
    if not isinstance(chunk, dict):
        raise UpstreamProtocolError("the upstream sent a chunk that is not a JSON object")
    if chunk.get("error"):
        raise in_stream_error(chunk)
    if usage := chunk.get("usageMetadata"):
        outcome.usage = Usage(usage.get("promptTokenCount"), usage.get("candidatesTokenCount"))
    if version := chunk.get("modelVersion"):
        outcome.model = version
    blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
    if blocked:
        outcome.finish_reason = f"blocked:{blocked}"
    candidates = chunk.get("candidates") or ()
    if not candidates:
        return []
    candidate = candidates[0]
    if finish := candidate.get("finishReason"):
        outcome.finish_reason = finish
    parts = (candidate.get("content") or {}).get("parts") or ()
    return [p["text"] for p in parts if p.get("text") and not p.get("thought")]
