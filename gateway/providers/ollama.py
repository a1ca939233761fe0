"""Ollama's native chat API (`POST /api/chat`, NDJSON).

Text is `message.content`; `message.thinking` is reasoning, not answer text. The stream is
complete at the line with `"done": true`, which also carries the token counts; a line
`{"error": "…"}` raises. The last line may arrive without a newline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    body_chunks,
    drain_after_end,
    in_stream_error,
    open_stream,
    parse_event,
    read_batch,
)
from gateway.providers._ndjson import NDJSONDecoder
from gateway.providers._shapes import count, obj, object_at, text
from gateway.providers.base import Batch, ChatRequest, StreamOutcome, Usage

__all__ = ["OllamaConfig", "OllamaProvider"]


class OllamaConfig(HTTPProviderConfig):
    type: Literal["ollama"] = "ollama"
    base_url: str = "http://localhost:11434"


class OllamaProvider:
    def __init__(self, config: OllamaConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = httpx.URL(f"{config.base_url}/api/chat")  # parsed once, not per request

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {"Accept": "application/x-ndjson", "Accept-Encoding": "identity"}
        headers.update(self.config.headers)
        if (key := self.config.optional_key()) is not None:  # ollama.com cloud models
            headers["Authorization"] = f"Bearer {key}"
        return self._client.post_json(self._url, _body(request), headers)

    async def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        http_request = self.build_request(request)
        async with open_stream(self._client, http_request, content_type="json") as response:
            decoder = NDJSONDecoder(self.config.max_event_bytes)
            chunks = body_chunks(response)
            broken: httpx.TransportError | None = None
            try:
                async for chunk in chunks:
                    batch, ended, error = read_batch(decoder.feed(chunk), _on_line, outcome)
                    if batch:
                        yield batch
                    if error is not None:
                        raise error
                    if ended:
                        await drain_after_end(chunks)
                        return
            except httpx.TransportError as exc:
                broken = exc  # the last line needs no newline: it may have said done
            for line in decoder.close():
                text, done = _last_line(line, outcome, broken)
                if text:
                    yield [text]
                if done:
                    return
            if broken is not None:
                raise broken
            raise UpstreamProtocolError("the upstream stream ended before done: true")

    async def aclose(self) -> None:
        return None


def _body(request: ChatRequest) -> dict[str, Any]:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.system is not None:
        messages.insert(0, {"role": "system", "content": request.system})
    options: dict[str, Any] = {}
    for ours, theirs in (
        ("max_tokens", "num_predict"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ):
        value = getattr(request, ours)
        if value is not None:
            options[theirs] = value
    if request.stop:
        options["stop"] = list(request.stop)
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    if options:
        body["options"] = options
    body.update(request.extra)
    return body


def _on_line(line: bytes, outcome: StreamOutcome, batch: Batch) -> bool:
    text, done = _line(parse_event(line), outcome)
    if text:
        batch.append(text)
    return done


def _last_line(
    line: bytes, outcome: StreamOutcome, broken: httpx.TransportError | None
) -> tuple[str, bool]:
    """The unterminated last line. After a broken connection, a line that does not parse
    was cut by the break, and the break is what to report."""
    try:
        data = parse_event(line)
    except UpstreamProtocolError:
        if broken is not None:
            raise broken from None
        raise
    return _line(data, outcome)


def _line(data: Any, outcome: StreamOutcome) -> tuple[str, bool]:
    line = object_at(data, "a line")
    if line.get("error"):
        raise in_stream_error(line)
    content = text(obj(line, "message"), "content") or ""
    if not line.get("done"):
        return content, False
    outcome.finish_reason = text(line, "done_reason") or "stop"
    outcome.model = text(line, "model")
    outcome.usage = Usage(count(line, "prompt_eval_count"), count(line, "eval_count"))
    return content, True
