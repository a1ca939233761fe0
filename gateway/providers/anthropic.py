"""Anthropic Messages streaming (`POST /v1/messages`, `stream: true`).

Text is `content_block_delta` with `delta.type == "text_delta"`; thinking, signature, tool-input
and citation deltas are not answer text. `ping` and unknown event types are ignored, as
Anthropic asks. Usage: input tokens from `message_start`, cumulative output tokens from the
last `message_delta`. The stream is complete only at `message_stop`; `event: error` (for
example `overloaded_error`) raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, Literal

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    in_stream_error,
    parse_event,
    sse_stream,
)
from gateway.providers._shapes import count, obj, object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatRequest, StreamOutcome, Usage

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicConfig",
    "AnthropicProvider",
    "on_event",
    "read_progress",
    "unfinished",
]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # required by the API


class AnthropicConfig(HTTPProviderConfig):
    type: Literal["anthropic"] = "anthropic"
    base_url: str = "https://api.anthropic.com"


class AnthropicProvider:
    def __init__(self, config: AnthropicConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = httpx.URL(f"{config.base_url}/v1/messages")  # parsed once, not per request

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            **request.anthropic_headers,
            **self.config.headers,
        }
        return self.post(_body(request), headers, stream=True, beta=False)

    def post(
        self, body: dict[str, Any], headers: dict[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        """The Messages request with this provider's key. Claude on Vertex and Bedrock is the
        same request in another envelope: their adapters change this, and nothing else."""
        headers["x-api-key"] = self.config.require_key()
        url = self._url.copy_add_param("beta", "true") if beta else self._url
        return self._client.post_json(url, body, headers)

    @property
    def client(self) -> UpstreamClient:
        return self._client

    def native_request(
        self, body: dict[str, Any], client_headers: Mapping[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        """The native path's request (gateway.native): a client's own body and its version and
        beta headers, with this provider's credentials; `?beta=true` kept when the client's
        SDK used its beta namespace."""
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
            **client_headers,
            **self.config.headers,
        }
        return self.post(body, headers, stream=stream, beta=beta)

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        build = partial(self.build_request, request)
        max_bytes = self.config.max_event_bytes
        return sse_stream(self._client, build, max_bytes, on_event, outcome, unfinished)

    async def aclose(self) -> None:
        return None


def unfinished(outcome: StreamOutcome) -> UpstreamProtocolError:
    return UpstreamProtocolError("the upstream stream ended before message_stop")


def on_event(event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
    if event.event == "content_block_delta":
        if delta := _text_delta(parse_event(event.data)):
            batch.append(delta)
    elif event.event == "message_stop":
        return True
    elif event.event == "error":
        raise in_stream_error(parse_event(event.data))
    elif event.event in ("message_start", "message_delta"):
        read_progress(event.event, parse_event(event.data), outcome)
    return False


def _body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "stream": True,
    }
    if request.system is not None:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    body.update(request.anthropic_params)
    body.update(request.extra)
    return body


def _text_delta(data: Any) -> str | None:
    delta = obj(object_at(data, "a content_block_delta event"), "delta")
    if delta.get("type") == "text_delta":
        return text(delta, "text")
    return None  # thinking, signature, tool input, citations: not answer text


def read_progress(kind: str, data: Any, outcome: StreamOutcome) -> None:
    """The model, usage and stop reason of a message_start or message_delta event."""
    event = object_at(data, f"a {kind} event")
    if kind == "message_start":
        message = obj(event, "message")
        outcome.model = text(message, "model")
        usage = obj(message, "usage")
        outcome.usage = Usage(count(usage, "input_tokens"), count(usage, "output_tokens"))
        return
    stop_reason = text(obj(event, "delta"), "stop_reason")
    if stop_reason:
        outcome.finish_reason = stop_reason
    usage = obj(event, "usage")
    current = outcome.usage or Usage()
    # message_delta usage is cumulative: take the latest values, never add them up.
    prompt, completion = count(usage, "input_tokens"), count(usage, "output_tokens")
    outcome.usage = Usage(
        current.prompt_tokens if prompt is None else prompt,
        current.completion_tokens if completion is None else completion,
    )
