"""OpenAI Chat Completions streaming, and every server that speaks it.

vLLM, llama.cpp, LM Studio, Ollama's /v1, Groq, Mistral, OpenRouter, Together… all send
`data: {chunk}` events ending with `data: [DONE]`, each with its quirks, handled here:
role-only first chunks and empty deltas are skipped; usage may come in a `choices: []` (or
`null`, or missing) chunk, or in Groq's `x_groq.usage`; Mistral may send `content` as a list of
typed parts; errors arrive as `{"error": …}` events (also as the first event of a 200, as vLLM
does), as OpenRouter's `finish_reason: "error"`, or as old llama.cpp's `error:` SSE field; a
stream that ends after a `finish_reason` but without `[DONE]` is accepted (some gateways never
send it); one that ends with neither is truncated. Only choice 0 is relayed; reasoning fields
(`reasoning`, `reasoning_content`) and tool-call arguments are not answer text. Refusal text
(`delta.refusal`) is relayed: it is what the model says to the user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal

import httpx

from gateway.errors import UpstreamProtocolError, UpstreamUnavailable
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    in_stream_error,
    parse_event,
    sanitise,
    sse_stream,
)
from gateway.providers._shapes import count, items, obj, object_at, text, wrong_shape
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatRequest, StreamOutcome, Usage

__all__ = ["OpenAIConfig", "OpenAIProvider", "read_usage"]


class OpenAIConfig(HTTPProviderConfig):
    type: Literal["openai"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    # The API the upstream serves Responses clients with (SPEC §4.10): "responses" sends
    # /v1/responses requests up natively (`POST {base_url}/responses`).
    api: Literal["chat", "responses"] = "chat"


class OpenAIProvider:
    def __init__(self, config: OpenAIConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = httpx.URL(f"{config.base_url}/chat/completions")  # parsed once, not per request
        self._responses_url = httpx.URL(f"{config.base_url}/responses")
        self._speech_url = httpx.URL(f"{config.base_url}/audio/speech")

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        headers.update(self.config.headers)
        if (key := self.config.optional_key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self._client.post_json(self._url, _body(request), headers)

    @property
    def client(self) -> UpstreamClient:
        return self._client

    def native_request(
        self, body: dict[str, Any], *, stream: bool, responses: bool = False
    ) -> httpx.Request:
        """The native path's request (gateway.native): a client's own body with this
        provider's credentials (none of the client's headers), to Chat Completions or, for a
        Responses client, to Responses."""
        headers = self._headers("text/event-stream" if stream else "application/json")
        url = self._responses_url if responses else self._url
        return self._client.post_json(url, body, headers)

    def speech_request(self, body: dict[str, Any]) -> httpx.Request:
        """`POST {base_url}/audio/speech` (SPEC §4.3): answered with audio bytes."""
        return self._client.post_json(self._speech_url, body, self._headers("*/*"))

    def stored_response_request(self, response_id: str) -> httpx.Request:
        """`GET {base_url}/responses/{id}`: a response the upstream stored (SPEC §4.10)."""
        url = self._responses_url.copy_with(path=f"{self._responses_url.path}/{response_id}")
        return self._client.build_request("GET", url, headers=self._headers("application/json"))

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        headers.update(self.config.headers)
        if (key := self.config.optional_key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        build = partial(self.build_request, request)
        max_bytes = self.config.max_event_bytes
        return sse_stream(self._client, build, max_bytes, _on_event, outcome, _unfinished)

    async def aclose(self) -> None:
        return None


def _body(request: ChatRequest) -> dict[str, Any]:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.system is not None:
        messages.insert(0, {"role": "system", "content": request.system})
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for key in ("max_tokens", "temperature", "top_p"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    body.update(request.openai_params)
    body.update(request.extra)
    return body


def _unfinished(outcome: StreamOutcome) -> UpstreamProtocolError | None:
    # A finish without [DONE] is complete: some compatible gateways never send it.
    if outcome.finish_reason is None:
        return UpstreamProtocolError("the upstream stream ended before [DONE]")
    return None


def _on_event(event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
    if event.event == "error":
        raise in_stream_error(parse_event(event.data))
    data = event.data
    if data[:1] != b"{" and data.strip() == b"[DONE]":  # a chunk is an object: skip the strip
        return True
    batch += _deltas(parse_event(data), outcome)
    return False


def _deltas(data: Any, outcome: StreamOutcome) -> list[str]:
    chunk = object_at(data, "a chunk")
    if chunk.get("error"):
        raise in_stream_error(chunk)
    if "usage" in chunk or "x_groq" in chunk:  # most chunks have neither
        read_usage(chunk, outcome)
    if outcome.model is None:
        outcome.model = text(chunk, "model")
    texts: list[str] = []
    for choice in items(chunk, "choices"):
        choice = object_at(choice, "a choice")
        if choice.get("index", 0) != 0:
            continue
        delta = obj(choice, "delta")
        _texts(delta, "content", texts)
        if "refusal" in delta:
            _texts(delta, "refusal", texts)
        finish = text(choice, "finish_reason")
        if finish == "error":
            raise UpstreamUnavailable(sanitise("the upstream stopped with finish_reason error"))
        if finish:
            outcome.finish_reason = finish
    return texts


def _texts(delta: dict[str, Any], key: str, into: list[str]) -> None:
    content = delta.get(key)
    if isinstance(content, str):
        if content:
            into.append(content)
    elif isinstance(content, list):  # Mistral: typed parts; only "text" parts are answer text
        for part in content:
            part = object_at(part, "a content part")
            if part.get("type") == "text" and (value := text(part, "text")):
                into.append(value)
    elif content is not None:
        raise wrong_shape(key, "text", content)


def read_usage(chunk: dict[str, Any], outcome: StreamOutcome) -> None:
    """A chunk's usage (or Groq's `x_groq.usage`), when it has one."""
    usage = obj(chunk, "usage")
    x_groq = obj(chunk, "x_groq")
    if x_groq.get("error"):  # Groq: "why the stream was stopped early"
        raise UpstreamUnavailable(sanitise(str(x_groq["error"])))
    usage = usage or obj(x_groq, "usage")
    if usage:
        details = obj(usage, "prompt_tokens_details")
        outcome.usage = Usage(
            count(usage, "prompt_tokens"),
            count(usage, "completion_tokens"),
            count(details, "cached_tokens"),
        )
