"""Anthropic Messages streaming (`POST /v1/messages`, `stream: true`).

Text is `content_block_delta` with `delta.type == "text_delta"`; thinking, signature, tool-input
and citation deltas are not answer text. `ping` and unknown event types are ignored, as
Anthropic asks. Usage: input tokens from `message_start`, cumulative output tokens from the
last `message_delta`. The stream is complete only at `message_stop`; `event: error` (for
example `overloaded_error`) raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.providers._http import (
    HTTPProviderConfig,
    drain_after_end,
    in_stream_error,
    open_stream,
    parse_event,
)
from gateway.providers._sse import SSEDecoder
from gateway.providers.base import ChatRequest, StreamOutcome, Usage

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicConfig", "AnthropicProvider"]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # required by the API


class AnthropicConfig(HTTPProviderConfig):
    type: Literal["anthropic"] = "anthropic"
    base_url: str = "https://api.anthropic.com"


class AnthropicProvider:
    def __init__(self, config: AnthropicConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self._client = client
        self._url = f"{config.base_url}/v1/messages"

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {
            "x-api-key": self.config.require_key(),
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            **request.anthropic_headers,
            **self.config.headers,
        }
        return self._client.build_request("POST", self._url, json=_body(request), headers=headers)

    async def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[str]:
        http_request = self.build_request(request)
        async with open_stream(
            self._client, self.config, http_request, content_type="event-stream"
        ) as response:
            decoder = SSEDecoder()
            chunks = response.aiter_bytes()
            async for chunk in chunks:
                for event in decoder.feed(chunk):
                    if event.event == "content_block_delta":
                        delta = parse_event(event.data).get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield delta["text"]
                    elif event.event == "message_stop":
                        await drain_after_end(chunks)
                        return
                    elif event.event == "error":
                        raise in_stream_error(parse_event(event.data))
                    elif event.event in ("message_start", "message_delta"):
                        _progress(event.event, parse_event(event.data), outcome)
            raise UpstreamProtocolError("the upstream stream ended before message_stop")

    async def aclose(self) -> None:
        return None


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


def _progress(kind: str, data: Any, outcome: StreamOutcome) -> None:
    if kind == "message_start":
        message = data.get("message") or {}
        outcome.model = message.get("model")
        usage = message.get("usage") or {}
        outcome.usage = Usage(usage.get("input_tokens"), usage.get("output_tokens"))
        return
    stop_reason = (data.get("delta") or {}).get("stop_reason")
    if stop_reason:
        outcome.finish_reason = stop_reason
    usage = data.get("usage") or {}
    current = outcome.usage or Usage()
    # message_delta usage is cumulative: take the latest values, never add them up.
    outcome.usage = Usage(
        usage.get("input_tokens", current.prompt_tokens),
        usage.get("output_tokens", current.completion_tokens),
    )
