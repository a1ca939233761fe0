"""Google Gemini `streamGenerateContent?alt=sse`.

Each event is a whole `GenerateContentResponse`: the text is the first candidate's parts
(parts with `thought: true` are reasoning, not answer text). There is no end sentinel: the
stream is complete when a chunk carried `finishReason` (or the prompt was blocked, which comes
as `promptFeedback.blockReason` with no candidates). `usageMetadata` may appear on any chunk;
the last one wins. The chunk that carries both a finish and the usage is Gemini's last: once it
is in, the answer is whole, and a connection that breaks afterwards is not an error. Errors
inside the stream come as `{"error": {code, message, status}}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    in_stream_error,
    parse_event,
    sse_stream,
)
from gateway.providers._shapes import count, items, obj, object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatRequest, StreamOutcome, Usage

__all__ = ["GeminiConfig", "GeminiProvider"]


class GeminiConfig(HTTPProviderConfig):
    type: Literal["gemini"] = "gemini"
    base_url: str = "https://generativelanguage.googleapis.com"


class GeminiProvider:
    def __init__(self, config: GeminiConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        headers.update(self.config.headers)
        return self.post(request.model, _body(request), headers)

    def post(self, model: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Request:
        """The request to the model's URL, with this provider's key (Vertex's adapter changes
        the URL and the credentials, and nothing else)."""
        # The model lands in the URL path: quote it whole so that no client-chosen name can
        # walk the path ("../") on a host that receives our key.
        model = quote(model, safe="")
        url = f"{self.config.base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse"
        headers["x-goog-api-key"] = self.config.require_key()
        return self._client.post_json(url, body, headers)

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        build = partial(self.build_request, request)
        max_bytes = self.config.max_event_bytes
        return sse_stream(self._client, build, max_bytes, _on_event, outcome, _unfinished)

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


def _unfinished(outcome: StreamOutcome) -> UpstreamProtocolError | None:
    if outcome.finish_reason is None:
        return UpstreamProtocolError("the upstream stream ended without a finishReason")
    return None


def _on_event(event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
    texts, last = _texts(parse_event(event.data), outcome)
    batch += texts
    return last


def _texts(data: Any, outcome: StreamOutcome) -> tuple[list[str], bool]:
    """The chunk's answer text, and whether it was the last chunk (finish and usage)."""
    chunk = object_at(data, "a chunk")
    if chunk.get("error"):
        raise in_stream_error(chunk)
    usage = obj(chunk, "usageMetadata")
    if usage:
        prompt = count(usage, "promptTokenCount")
        outcome.usage = Usage(prompt, count(usage, "candidatesTokenCount"))
    if version := text(chunk, "modelVersion"):
        outcome.model = version
    if blocked := text(obj(chunk, "promptFeedback"), "blockReason"):
        outcome.finish_reason = f"blocked:{blocked}"
    candidates = items(chunk, "candidates")
    if not candidates:
        return [], bool(blocked and usage)
    candidate = object_at(candidates[0], "a candidate")
    finish = text(candidate, "finishReason")
    if finish:
        outcome.finish_reason = finish
    texts: list[str] = []
    for part in items(obj(candidate, "content"), "parts"):
        part = object_at(part, "a part")
        if (value := text(part, "text")) and not part.get("thought"):
            texts.append(value)
    return texts, bool(finish and usage)
