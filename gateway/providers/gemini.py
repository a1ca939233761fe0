"""Google Gemini `streamGenerateContent?alt=sse`.

Each event is a whole `GenerateContentResponse`: the text is the first candidate's parts
(parts with `thought: true` are reasoning parts). A `functionCall` part is a whole call: one
start, fragment and end, with a gateway-made id (Gemini gives none) and its place counted per
answer, never by name (parallel calls arrive as separate chunks, often of the same name). A
part's `thoughtSignature` becomes a reasoning end of origin `gemini` just before the part, and
goes back on the same kind of part (the first call, or the text) of the model's turn; calls
that come from elsewhere get Google's documented placeholder signature instead. Gemini says
`STOP` after calls too; an answer with calls finishes as `tool_calls`. There is no end sentinel: the
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
import orjson

from gateway.errors import BadRequest, UpstreamProtocolError
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    Reasoning,
    ReasoningControl,
    ReasoningDelta,
    ReasoningEnd,
    Text,
    ToolCall,
    ToolResult,
    text_of,
)
from gateway.providers._calls import (
    arguments_object,
    result_text,
    sampling_config,
    whole_call,
)
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    in_stream_error,
    parse_event,
    sse_stream,
)
from gateway.providers._schemas import gemini_schema
from gateway.providers._shapes import count, items, obj, object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage

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
        on_event = _GeminiStream().on_event
        return sse_stream(self._client, build, max_bytes, on_event, outcome, _unfinished)

    async def aclose(self) -> None:
        return None


ORIGIN = "gemini"
# Google's documented stand-in for a call's thought signature when the call was not made by
# Gemini (a conversation begun on another model): Gemini 3 refuses calls without one.
PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"


def _body(request: ChatRequest) -> dict[str, Any]:
    systems = [request.system] if request.system is not None else []
    names: dict[str, str] = {}  # call id -> tool name: Gemini matches results by name
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if message.role == "system":
            systems.append(text_of(message.content))
            continue
        parts = _parts(message, names, f"messages.{i}")
        if parts:
            contents.append(
                {"role": "model" if message.role == "assistant" else "user", "parts": parts}
            )
    body: dict[str, Any] = {"contents": contents}
    if systems:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(systems)}]}
    config = sampling_config(request, "maxOutputTokens")
    _beyond_text(request, body, config)
    if config:
        body["generationConfig"] = config
    body.update(request.extra)
    return body


def _parts(message: ChatMessage, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    signature: str | None = None  # a Gemini signature waiting for the part it belongs to
    signed = False  # the turn's first call carries a signature (a real one or the stand-in)
    for part in content:
        if isinstance(part, Reasoning):
            if part.origin == ORIGIN and part.signature:
                signature = part.signature
            continue
        out = _part(part, names, where)
        if out is None:
            continue
        if "functionCall" in out and not signed:
            out["thoughtSignature"] = signature or PLACEHOLDER_SIGNATURE
            signed, signature = True, None
        elif signature is not None:
            out["thoughtSignature"] = signature
            signature = None
        parts.append(out)
    return parts


def _part(part: ContentPart, names: dict[str, str], where: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, Image | Document):
        if part.data is None:  # the gateway never fetches a URL for an upstream
            raise BadRequest(f"{where}: this model takes images and documents inline (base64) only")
        return {"inlineData": {"mimeType": part.media_type or "application/pdf", "data": part.data}}
    if isinstance(part, ToolCall):
        names[part.id] = part.name
        return {
            "functionCall": {"name": part.name, "args": arguments_object(part.arguments, where)}
        }
    if isinstance(part, ToolResult):
        name = part.name or names.get(part.call_id)
        if name is None:
            raise BadRequest(f"{where}: a tool result for a call the conversation does not have")
        return {"functionResponse": {"name": name, "response": _response(part)}}
    return None


def _response(result: ToolResult) -> dict[str, Any]:
    """A result as Gemini's `response` object: a JSON object as it is, else wrapped."""
    text = result_text(result)
    if result.is_error:
        return {"error": text}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _beyond_text(request: ChatRequest, body: dict[str, Any], config: dict[str, Any]) -> None:
    if request.tools:
        declarations = []
        for i, tool in enumerate(request.tools):
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            if schema := gemini_schema(tool.parameters, f"tools.{i}.parameters"):
                declaration["parametersJsonSchema"] = schema
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    if (choice := request.tool_choice) is not None:
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[choice.mode]
        calling: dict[str, Any] = {"mode": mode}
        if choice.mode == "tool":
            calling["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": calling}
    if (format := request.response_format) is not None:
        config["responseMimeType"] = "application/json"
        if format.schema is not None and (
            schema := gemini_schema(format.schema, "response_format.schema")
        ):
            config["responseJsonSchema"] = schema
    if request.reasoning is not None:
        config["thinkingConfig"] = _thinking(request.reasoning)


def _thinking(control: ReasoningControl) -> dict[str, Any]:
    if not control.enabled:
        return {"thinkingBudget": 0}
    budget = control.budget()
    thinking: dict[str, Any] = {"includeThoughts": True}
    if budget is not None:
        thinking["thinkingBudget"] = budget
    return thinking


def _unfinished(outcome: StreamOutcome) -> UpstreamProtocolError | None:
    if outcome.finish_reason is None:
        return UpstreamProtocolError("the upstream stream ended without a finishReason")
    return None


class _GeminiStream:
    """One stream's reading: how many calls it has had (each call's place in the answer)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def on_event(self, event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
        return self.read(parse_event(event.data), outcome, batch)

    def read(self, data: Any, outcome: StreamOutcome, batch: Batch) -> bool:
        """The chunk's deltas into `batch`; whether it was the last chunk (finish and usage)."""
        candidate, last = _chunk(data, outcome)
        if candidate is None:
            return last
        for part in items(obj(candidate, "content"), "parts"):
            part = object_at(part, "a part")
            if signature := text(part, "thoughtSignature"):
                if part.get("thought"):  # the thought's own signature: after its text
                    self.thought(part, batch)
                    batch.append(ReasoningEnd(signature, ORIGIN))
                    continue
                batch.append(ReasoningEnd(signature, ORIGIN))
            if "functionCall" in part:
                self.call(obj(part, "functionCall"), batch)
            elif part.get("thought"):
                self.thought(part, batch)
            elif value := text(part, "text"):
                batch.append(value)
        if self.calls and outcome.finish_reason == "STOP":
            outcome.finish_reason = "tool_calls"
        return last

    def thought(self, part: dict[str, Any], batch: Batch) -> None:
        if value := text(part, "text"):
            batch.append(ReasoningDelta(value))

    def call(self, call: dict[str, Any], batch: Batch) -> None:
        name = text(call, "name")
        if not name:
            raise UpstreamProtocolError("the upstream sent a functionCall without a name")
        args = call.get("args")
        if args is not None and not isinstance(args, dict):
            raise UpstreamProtocolError(
                "the upstream sent functionCall args that are not an object"
            )
        batch += whole_call(self.calls, text(call, "id"), name, args)
        self.calls += 1


def _chunk(data: Any, outcome: StreamOutcome) -> tuple[dict[str, Any] | None, bool]:
    """The chunk's first candidate (None: none), and whether it was the last chunk."""
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
        return None, bool(blocked and usage)
    candidate = object_at(candidates[0], "a candidate")
    finish = text(candidate, "finishReason")
    if finish:
        outcome.finish_reason = finish
    return candidate, bool(finish and usage)
