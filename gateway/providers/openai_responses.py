"""OpenAI's Responses API as an upstream for the translated path (SPEC §4.10: "Chat Completions
and Anthropic clients work on Responses-only upstream models too").

An `openai` provider with `api = "responses"` serves Responses clients natively; every other
client's request reaches it through here: the neutral request as a Responses body
(`responses_body`), and the upstream's events read into deltas (`ResponsesStream`): output
text and refusals as text, reasoning summaries and reasoning text as reasoning, function calls
as tool-call parts (their arguments streamed, or sent whole at `response.output_item.done` by
servers that stream none), usage and why it ended from the terminal event. `response.failed`
and `event: error` are the upstream's errors; a stream without a terminal event is truncated.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest, UpstreamProtocolError
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    ReasoningDelta,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
)
from gateway.providers._calls import data_url, result_text
from gateway.providers._http import in_stream_error, parse_event
from gateway.providers._shapes import count, obj, object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage

__all__ = ["ResponsesStream", "read_end", "responses_body", "unfinished"]

# What `openai_params` (Chat Completions' sampling hints) become here; the rest have no
# Responses equivalent and are left out.
_HINTS = ("user", "safety_identifier", "prompt_cache_key", "service_tier")


def responses_body(request: ChatRequest) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        items += _items(message, f"messages.{i}")
    body: dict[str, Any] = {
        "model": request.model,
        "input": items,
        "stream": True,
        "store": False,  # the gateway holds no id the client could continue with
    }
    if request.system is not None:
        body["instructions"] = request.system
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for key in ("temperature", "top_p"):
        if (value := getattr(request, key)) is not None:
            body[key] = value
    _controls(request, body)
    params = request.openai_params
    body.update({key: params[key] for key in _HINTS if key in params})
    body.update(request.extra)
    return body


def _items(message: ChatMessage, where: str) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return [{"role": message.role, "content": content}]
    items: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ToolCall):
            call = {"type": "function_call", "call_id": part.id, "name": part.name}
            items.append({**call, "arguments": part.arguments})
        elif isinstance(part, ToolResult):
            output = result_text(part)
            items.append(
                {"type": "function_call_output", "call_id": part.call_id, "output": output}
            )
        elif (converted := _part(part, message.role, where)) is not None:
            parts.append(converted)
    if parts:
        items.insert(0, {"role": message.role, "content": parts})
    return items


def _part(part: ContentPart, role: str, where: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
    if isinstance(part, Image):
        return {"type": "input_image", "image_url": data_url(part)}
    if isinstance(part, Document):
        if part.data is None:
            raise BadRequest(f"{where}: documents go to this model inline (base64) only")
        return {"type": "input_file", "file_data": data_url(part), "filename": part.title or "file"}
    return None  # earlier reasoning: its signatures are not this upstream's


def _controls(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if (choice := request.tool_choice) is not None:
        named = {"type": "function", "name": choice.name}
        body["tool_choice"] = named if choice.mode == "tool" else choice.mode
    if (format := request.response_format) is not None:
        if format.schema is None:
            body["text"] = {"format": {"type": "json_object"}}
        else:
            schema: dict[str, Any] = {"type": "json_schema", "name": format.name or "response"}
            schema["schema"] = format.schema
            if format.strict is not None:
                schema["strict"] = format.strict
            body["text"] = {"format": schema}
    reasoning = request.reasoning
    if reasoning is not None:
        effort = "none" if not reasoning.enabled else reasoning.effort
        if effort is not None:
            body["reasoning"] = {"effort": effort}


def unfinished(outcome: StreamOutcome) -> UpstreamProtocolError:
    return UpstreamProtocolError("the upstream stream ended before response.completed")


_TEXT = ("response.output_text.delta", "response.refusal.delta")
_REASONING = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


class ResponsesStream:
    """One stream's reading: the calls in flight, by their item id."""

    __slots__ = ("calls", "streamed")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}  # item id -> the call's place among the answer's
        self.streamed: set[str] = set()  # calls whose arguments came as deltas

    def on_event(self, event: SSEEvent, outcome: StreamOutcome, batch: Batch) -> bool:
        data = object_at(parse_event(event.data), "an event")
        kind = text(data, "type") or event.event
        if kind in _TEXT:
            if delta := text(data, "delta"):
                batch.append(delta)
        elif kind in _REASONING:
            if delta := text(data, "delta"):
                batch.append(ReasoningDelta(delta))
        elif kind == "response.output_item.added":
            self._added(obj(data, "item"), batch)
        elif kind == "response.function_call_arguments.delta":
            item_id = text(data, "item_id") or ""
            if item_id in self.calls and (delta := text(data, "delta")):
                self.streamed.add(item_id)
                batch.append(ToolCallDelta(self.calls[item_id], delta))
        elif kind == "response.output_item.done":
            self._done(obj(data, "item"), batch)
        elif kind in ("response.completed", "response.incomplete"):
            read_end(obj(data, "response"), outcome, bool(self.calls))
            return True
        elif kind == "response.failed":
            error = obj(obj(data, "response"), "error")
            raise in_stream_error({"error": error}, error.get("code"))
        elif kind == "error":
            raise in_stream_error(data, data.get("code"))
        return False

    def _added(self, item: dict[str, Any], batch: Batch) -> None:
        if item.get("type") != "function_call":
            return
        item_id = text(item, "id") or text(item, "call_id") or ""
        index = self.calls[item_id] = len(self.calls)
        call_id = text(item, "call_id") or item_id
        batch.append(ToolCallStart(index, call_id, text(item, "name") or ""))

    def _done(self, item: dict[str, Any], batch: Batch) -> None:
        item_id = text(item, "id") or text(item, "call_id") or ""
        if item.get("type") != "function_call" or item_id not in self.calls:
            return
        index = self.calls[item_id]
        if item_id not in self.streamed and (arguments := text(item, "arguments")):
            batch.append(ToolCallDelta(index, arguments))  # a server that streams none
        batch.append(ToolCallEnd(index))


def read_end(response: dict[str, Any], outcome: StreamOutcome, calls: bool) -> None:
    """Usage, the model, and why the answer ended in Chat Completions' words (a Responses
    answer has a status, not a finish reason), from a terminal event's or a whole response;
    `calls`: whether the answer called tools."""
    usage = obj(response, "usage")
    if usage:
        details = obj(usage, "input_tokens_details")
        outcome.usage = Usage(
            count(usage, "input_tokens"),
            count(usage, "output_tokens"),
            count(details, "cached_tokens"),
        )
    outcome.model = text(response, "model") or outcome.model
    reason = text(obj(response, "incomplete_details"), "reason")
    if text(response, "status") == "incomplete":
        outcome.finish_reason = "content_filter" if reason == "content_filter" else "length"
    else:
        outcome.finish_reason = "tool_calls" if calls else "stop"
