"""OpenAI Chat Completions streaming, and every server that speaks it.

vLLM, llama.cpp, LM Studio, Ollama's /v1, Groq, Mistral, OpenRouter, Together… all send
`data: {chunk}` events ending with `data: [DONE]`, each with its quirks, handled here:
role-only first chunks and empty deltas are skipped; usage may come in a `choices: []` (or
`null`, or missing) chunk, or in Groq's `x_groq.usage`; Mistral may send `content` as a list of
typed parts; errors arrive as `{"error": …}` events (also as the first event of a 200, as vLLM
does), as OpenRouter's `finish_reason: "error"`, or as old llama.cpp's `error:` SSE field; a
stream that ends after a `finish_reason` but without `[DONE]` is accepted (some gateways never
send it); one that ends with neither is truncated. Only choice 0 is relayed. Refusal text
(`delta.refusal`) is relayed: it is what the model says to the user.

Beyond text (SPEC §4.9): reasoning fields (`reasoning_content`, vLLM's and OpenRouter's
`reasoning`) become reasoning parts; `delta.tool_calls` become tool-call parts, each call's id and
name first, then its argument fragments, ended when the next call starts or the choice finishes
(OpenAI's calls are sequential; some servers send a call whole in one chunk, which is the same).
Requests carry tools, tool choice, the parallel switch, `response_format`, `reasoning_effort`,
assistant `tool_calls` and one `tool` message per result, images as `image_url` and documents as
`file` parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal

import httpx

from gateway.errors import BadRequest, UpstreamProtocolError, UpstreamUnavailable
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    JsonFormat,
    ReasoningControl,
    ReasoningDelta,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from gateway.providers._calls import (
    StreamedCalls,
    data_url,
    result_images,
    result_text,
    sampling_config,
)
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
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage
from gateway.providers.openai_responses import ResponsesStream, responses_body
from gateway.providers.openai_responses import unfinished as responses_unfinished

__all__ = ["OpenAIConfig", "OpenAIProvider", "read_usage"]


class OpenAIConfig(HTTPProviderConfig):
    type: Literal["openai"] = "openai"
    base_url: str = "https://api.openai.com/v1"
    # The API the upstream speaks (SPEC §4.10): "responses" sends /v1/responses requests up
    # natively (`POST {base_url}/responses`) and every other client's through
    # gateway.providers.openai_responses; "chat", Chat Completions.
    api: Literal["chat", "responses"] = "chat"


class OpenAIProvider:
    def __init__(self, config: OpenAIConfig, client: UpstreamClient) -> None:
        self.config = config
        self._client = client
        self._url = httpx.URL(self.url_path(config.base_url))  # parsed once, not per request
        self._responses_url = httpx.URL(f"{config.base_url}/responses")
        self._speech_url = httpx.URL(f"{config.base_url}/audio/speech")

    @staticmethod
    def url_path(base_url: str) -> str:
        return f"{base_url}/chat/completions"

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        headers.update(self.config.headers)
        return self.post(request.model, _body(request), headers)

    def post(self, model: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Request:
        """The request to the chat completions URL, with this provider's credentials (Azure's
        adapter changes the URL and the credentials, and nothing else)."""
        if (key := self.config.optional_key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self._client.post_json(self._url, body, headers)

    @property
    def client(self) -> UpstreamClient:
        return self._client

    def native_request(
        self, body: dict[str, Any], *, stream: bool, responses: bool = False
    ) -> httpx.Request:
        """The native path's request (gateway.native): a client's own body with this
        provider's credentials (none of the client's headers), to Chat Completions or, for a
        Responses client, to Responses."""
        accept = "text/event-stream" if stream else "application/json"
        if responses:
            return self._client.post_json(self._responses_url, body, self._headers(accept))
        headers = {"Accept": accept, "Accept-Encoding": "identity", **self.config.headers}
        return self.post(str(body.get("model", "")), body, headers)  # Azure's URL and key

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
        max_bytes = self.config.max_event_bytes
        if self.config.api == "responses":  # a Responses-only upstream (openai_responses)
            build = partial(self._responses_request, request)
            reader = ResponsesStream().on_event
            return sse_stream(self._client, build, max_bytes, reader, outcome, responses_unfinished)
        build = partial(self.build_request, request)
        on_event = _ChatStream().on_event
        return sse_stream(self._client, build, max_bytes, on_event, outcome, _unfinished)

    def _responses_request(self, request: ChatRequest) -> httpx.Request:
        body = responses_body(request)
        return self._client.post_json(self._responses_url, body, self._headers("text/event-stream"))

    async def aclose(self) -> None:
        return None


def _body(request: ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    for i, message in enumerate(request.messages):
        messages += _message(message, f"messages.{i}")
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body.update(sampling_config(request, "max_tokens", top_p="top_p", stop="stop"))
    _beyond_text(request, body)
    body.update(request.openai_params)
    body.update(request.extra)
    return body


def _message(message: ChatMessage, where: str) -> list[dict[str, Any]]:
    """One neutral message as Chat Completions messages: tool results become one `tool`
    message each (before the rest of the user's turn, which then follows as a user message)."""
    content = message.content
    if isinstance(content, str):
        return [{"role": message.role, "content": content}]
    if message.role == "assistant":
        return [_assistant(content)]
    out: list[dict[str, Any]] = []
    rest: list[ContentPart] = []
    for part in content:
        if isinstance(part, ToolResult):
            out.append({"role": "tool", "tool_call_id": part.call_id, "content": result_text(part)})
            rest += result_images(part)  # a tool message takes no image: the next user turn
        else:
            rest.append(part)
    if rest:
        out.append({"role": message.role, "content": _user_content(rest, where)})
    return out


def _assistant(content: tuple[ContentPart, ...]) -> dict[str, Any]:
    texts = [part.text for part in content if isinstance(part, Text)]
    calls = [
        {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
        for p in content
        if isinstance(p, ToolCall)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message  # earlier reasoning has no slot here (and its signatures are not OpenAI's)


def _user_content(parts: list[ContentPart], where: str) -> str | list[dict[str, Any]]:
    if all(isinstance(part, Text) for part in parts):  # what every compatible server takes
        return "".join(part.text for part in parts if isinstance(part, Text))
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            out.append({"type": "image_url", "image_url": {"url": data_url(part)}})
        elif isinstance(part, Document):
            if part.data is None:
                raise BadRequest(f"{where}: documents go to this model inline (base64) only")
            file = {"file_data": data_url(part), "filename": part.title or "document"}
            out.append({"type": "file", "file": file})
    return out


def _beyond_text(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    if request.reasoning is not None and (effort := reasoning_effort(request.reasoning)):
        body["reasoning_effort"] = effort


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _response_format(format: JsonFormat) -> dict[str, Any]:
    if format.schema is None:
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": format.name or "response", "schema": format.schema}
    if format.strict is not None:
        schema["strict"] = format.strict
    return {"type": "json_schema", "json_schema": schema}


def reasoning_effort(control: ReasoningControl) -> str | None:
    """The effort word for a reasoning control: its own, or a thinking budget's nearest."""
    return control.effort_word() if control.enabled else None


def _unfinished(outcome: StreamOutcome) -> UpstreamProtocolError | None:
    # A finish without [DONE] is complete: some compatible gateways never send it.
    if outcome.finish_reason is None:
        return UpstreamProtocolError("the upstream stream ended before [DONE]")
    return None


class _ChatStream:
    """One stream's reading: its tool calls in flight (the only state a chunk leaves)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = StreamedCalls()

    def on_event(self, event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
        if event.event == "error":
            raise in_stream_error(parse_event(event.data))
        data = event.data
        if data[:1] != b"{" and data.strip() == b"[DONE]":  # a chunk is an object: no strip
            batch += self.calls.end_all()
            return True
        self.deltas(parse_event(data), outcome, batch)
        return False

    def deltas(self, data: Any, outcome: StreamOutcome, batch: Batch) -> None:
        chunk = object_at(data, "a chunk")
        if chunk.get("error"):
            raise in_stream_error(chunk)
        if "usage" in chunk or "x_groq" in chunk:  # most chunks have neither
            read_usage(chunk, outcome)
        if outcome.model is None:
            outcome.model = text(chunk, "model")
        for choice in items(chunk, "choices"):
            choice = object_at(choice, "a choice")
            if choice.get("index", 0) != 0:
                continue
            delta = obj(choice, "delta")
            if "reasoning_content" in delta or "reasoning" in delta:
                _reasoning(delta, batch)
            _texts(delta, "content", batch)
            if "refusal" in delta:
                _texts(delta, "refusal", batch)
            if "tool_calls" in delta:
                self.tool_calls(delta, batch)
            finish = text(choice, "finish_reason")
            if finish == "error":
                raise UpstreamUnavailable(sanitise("the upstream stopped with finish_reason error"))
            if finish:
                outcome.finish_reason = finish
                batch += self.calls.end_all()

    def tool_calls(self, delta: dict[str, Any], batch: Batch) -> None:
        calls = self.calls
        for position, call in enumerate(items(delta, "tool_calls")):
            call = object_at(call, "a tool call")
            key = call.get("index", position)
            function = obj(call, "function")
            if not calls.is_open(key):
                name = text(function, "name")
                if not name:
                    raise UpstreamProtocolError("the upstream started a tool call without a name")
                batch += calls.end_all()  # sequential: a new call ends the one before
                batch.append(calls.start(key, text(call, "id"), name))
            if arguments := text(function, "arguments"):
                batch.append(calls.fragment(key, arguments))


def _reasoning(delta: dict[str, Any], batch: Batch) -> None:
    thought = text(delta, "reasoning_content") or text(delta, "reasoning")
    if thought:
        batch.append(ReasoningDelta(thought))


def _texts(delta: dict[str, Any], key: str, into: Batch) -> None:
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
