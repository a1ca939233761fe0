"""Ollama's native chat API (`POST /api/chat`, NDJSON).

Text is `message.content`; `message.thinking` is a reasoning part. `message.tool_calls`
carries whole calls (arguments as an object), each a start, one fragment and an end, with the
server's id (Ollama ≥ 0.12.10) or a gateway-made one. The stream is complete at the line with
`"done": true`, which also carries the token counts (`done_reason` is `stop` after calls too:
an answer with calls finishes as `tool_calls`); a line `{"error": "…"}` raises. The last line
may arrive without a newline.

Requests: tools in OpenAI's shape, `think` for reasoning controls, `format` for structured
output, images as base64 `images` of their message, one `tool` message per result. Ollama has
no tool choice: `required` or a named tool is a 400, `none` sends no tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import orjson

from gateway.errors import BadRequest, UpstreamProtocolError
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    ReasoningDelta,
    Text,
    ToolCall,
    ToolResult,
)
from gateway.providers._calls import (
    arguments_object,
    result_images,
    result_text,
    sampling_config,
    whole_call,
)
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
from gateway.providers._shapes import count, items, obj, object_at, text
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage

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
            lines = _Lines()
            broken: httpx.TransportError | None = None
            try:
                async for chunk in chunks:
                    batch, ended, error = read_batch(decoder.feed(chunk), lines.on_line, outcome)
                    if batch:
                        yield batch
                    if error is not None:
                        raise error
                    if ended:
                        await drain_after_end(chunks, response)
                        return
            except httpx.TransportError as exc:
                broken = exc  # the last line needs no newline: it may have said done
            for line in decoder.close():
                batch, done = lines.last_line(line, outcome, broken)
                if batch:
                    yield batch
                if done:
                    return
            if broken is not None:
                raise broken
            raise UpstreamProtocolError("the upstream stream ended before done: true")

    async def aclose(self) -> None:
        return None


def _body(request: ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    names: dict[str, str] = {}
    for i, message in enumerate(request.messages):
        messages += _message(message, names, f"messages.{i}")
    options = sampling_config(request, "num_predict", top_p="top_p", stop="stop")
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    if options:
        body["options"] = options
    _beyond_text(request, body)
    body.update(request.extra)
    return body


def _message(message: ChatMessage, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return [{"role": message.role, "content": content}]
    out: list[dict[str, Any]] = []
    rest: list[ContentPart] = []
    for part in content:
        if isinstance(part, ToolResult):
            result = {"role": "tool", "content": result_text(part), "tool_call_id": part.call_id}
            if name := part.name or names.get(part.call_id):
                result["tool_name"] = name
            out.append(result)
            rest += result_images(part)
        else:
            rest.append(part)
    if not rest and out:
        return out
    texts = [part.text for part in rest if isinstance(part, Text)]
    main: dict[str, Any] = {"role": message.role, "content": "".join(texts)}
    images = [_image(part, where) for part in rest if isinstance(part, Image | Document)]
    if images:
        main["images"] = images
    calls = [part for part in rest if isinstance(part, ToolCall)]
    if calls:
        for call in calls:
            names[call.id] = call.name
        main["tool_calls"] = [
            {
                "id": c.id,
                "function": {"name": c.name, "arguments": arguments_object(c.arguments, where)},
            }
            for c in calls
        ]
    return [*out, main]


def _image(part: Image | Document, where: str) -> str:
    if isinstance(part, Document) or part.data is None:
        raise BadRequest(f"{where}: this model takes images inline (base64) only, and no documents")
    return part.data


def _beyond_text(request: ChatRequest, body: dict[str, Any]) -> None:
    choice = request.tool_choice
    if choice is not None and choice.mode in ("required", "tool"):
        raise BadRequest("tool_choice: Ollama cannot be made to call a tool (only auto or none)")
    if request.tools and (choice is None or choice.mode != "none"):
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or "",
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    if (format := request.response_format) is not None:
        body["format"] = format.schema if format.schema is not None else "json"
    if (control := request.reasoning) is not None:
        effort = control.effort if control.effort in ("low", "medium", "high") else None
        body["think"] = effort or control.enabled


class _Lines:
    """One stream's reading: how many calls it has had (each call's place in the answer)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def on_line(self, line: bytes, outcome: StreamOutcome, batch: Batch) -> bool:
        return self.read(parse_event(line), outcome, batch)

    def last_line(
        self, line: bytes, outcome: StreamOutcome, broken: httpx.TransportError | None
    ) -> tuple[Batch, bool]:
        """The unterminated last line. After a broken connection, a line that does not parse
        was cut by the break, and the break is what to report."""
        try:
            data = parse_event(line)
        except UpstreamProtocolError:
            if broken is not None:
                raise broken from None
            raise
        batch: Batch = []
        return batch, self.read(data, outcome, batch)

    def read(self, data: Any, outcome: StreamOutcome, batch: Batch) -> bool:
        line = object_at(data, "a line")
        if line.get("error"):
            raise in_stream_error(line)
        message = obj(line, "message")
        if thinking := text(message, "thinking"):
            batch.append(ReasoningDelta(thinking))
        if content := text(message, "content"):
            batch.append(content)
        if "tool_calls" in message:
            self.tool_calls(message, batch)
        if not line.get("done"):
            return False
        finish = text(line, "done_reason") or "stop"
        outcome.finish_reason = "tool_calls" if self.calls and finish == "stop" else finish
        outcome.model = text(line, "model")
        outcome.usage = Usage(count(line, "prompt_eval_count"), count(line, "eval_count"))
        return True

    def tool_calls(self, message: dict[str, Any], batch: Batch) -> None:
        for call in items(message, "tool_calls"):
            call = object_at(call, "a tool call")
            function = obj(call, "function")
            name = text(function, "name")
            if not name:
                raise UpstreamProtocolError("the upstream sent a tool call without a name")
            arguments = function.get("arguments")
            if isinstance(arguments, str):  # some servers send the JSON text
                try:
                    arguments = orjson.loads(arguments) if arguments.strip() else {}
                except orjson.JSONDecodeError:
                    raise UpstreamProtocolError(
                        "the upstream sent tool arguments that are not JSON"
                    ) from None
            if arguments is not None and not isinstance(arguments, dict):
                raise UpstreamProtocolError(
                    "the upstream sent tool arguments that are not an object"
                )
            batch += whole_call(self.calls, text(call, "id"), name, arguments)
            self.calls += 1
