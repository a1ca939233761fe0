"""Bedrock's Converse API (`/model/{id}/converse-stream`): the request and the stream's events.

Requests: messages of content blocks (`text`, `image`, `document`, `toolUse`, `toolResult`,
`reasoningContent`), `system` blocks, `inferenceConfig`, and `toolConfig` for tools and the
tool choice (`auto`, `any`, `tool`; Converse has no `none`, which is a 400 naming it, and no
parallel-calls switch, a hint that is dropped). Images and documents only as inline bytes.

Stream (one JSON event per event-stream message, `:event-type` naming it): `contentBlockStart`
opens a tool call (`start.toolUse`: id and name), `contentBlockDelta` carries text, a call's
argument fragment (`delta.toolUse.input`) or reasoning (`delta.reasoningContent`: text, then
its signature, or `redactedContent`), `contentBlockStop` ends a block, `messageStop` has the
stop reason and `metadata`, which follows it, the usage. Exception messages are mapped by
`gateway.providers.bedrock`.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import UpstreamProtocolError, UpstreamRejected
from gateway.parts import (
    Document,
    Image,
    Reasoning,
    ReasoningDelta,
    ReasoningEnd,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
)
from gateway.providers._calls import sampling_config
from gateway.providers._eventstream import Frame
from gateway.providers._http import parse_event
from gateway.providers._shapes import count, obj, object_at, text
from gateway.providers.base import Batch, ChatMessage, ChatRequest, StreamOutcome, Usage

__all__ = ["ORIGIN", "ConverseEvents", "converse_body"]

ORIGIN = "bedrock"  # what reasoning signatures made by Converse models are marked with


def converse_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [_message(m) for m in request.messages]}
    if request.system is not None:
        body["system"] = [{"text": request.system}]
    config = sampling_config(request, "maxTokens")
    if config:
        body["inferenceConfig"] = config
    if tools := _tool_config(request):
        body["toolConfig"] = tools
    body.update(request.extra)
    return body


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is not None and choice.mode == "none":
        raise UpstreamRejected(
            "Bedrock Converse cannot be told not to use tools (tool_choice none)"
        )
    if not request.tools:
        return None
    specs = [
        {
            "toolSpec": {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "inputSchema": {"json": tool.parameters or {"type": "object"}},
            }
        }
        for tool in request.tools
    ]
    config: dict[str, Any] = {"tools": specs}
    if choice is not None and choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice.mode == "tool":
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice is not None:
        config["toolChoice"] = {"auto": {}}
    return config


def _message(message: ChatMessage) -> dict[str, Any]:
    content = message.content
    if isinstance(content, str):
        return {"role": message.role, "content": [{"text": content}]}
    blocks = [block for part in content if (block := _block(part)) is not None]
    return {"role": message.role, "content": blocks}


def _block(part: object) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"text": part.text}
    if isinstance(part, ToolCall):
        try:
            arguments = json.loads(part.arguments or "{}")
        except json.JSONDecodeError:
            raise UpstreamRejected(f"the arguments of tool call {part.id!r} are not JSON") from None
        return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": arguments}}
    if isinstance(part, ToolResult):
        content = part.content
        blocks = (
            [{"text": content}] if isinstance(content, str) else [_block(each) for each in content]
        )
        status = "error" if part.is_error else "success"
        return {"toolResult": {"toolUseId": part.call_id, "content": blocks, "status": status}}
    if isinstance(part, Image | Document):
        return _media(part)
    if isinstance(part, Reasoning):
        # Reasoning goes back only to the kind of upstream that made it (SPEC §4.9).
        if part.origin != ORIGIN or not part.signature:
            return None
        if part.redacted:
            return {"reasoningContent": {"redactedContent": part.signature}}
        reasoning = {"text": part.text, "signature": part.signature}
        return {"reasoningContent": {"reasoningText": reasoning}}
    return None


def _media(part: Image | Document) -> dict[str, Any]:
    kind = "image" if isinstance(part, Image) else "document"
    if part.data is None:
        raise UpstreamRejected(f"Bedrock Converse takes a {kind} only as inline bytes, not by URL")
    media = (part.media_type or "").partition("/")[2] or ("png" if kind == "image" else "pdf")
    block: dict[str, Any] = {"format": media, "source": {"bytes": part.data}}
    if isinstance(part, Document):
        block["name"] = part.title or "document"
    return {kind: block}


class ConverseEvents:
    """One stream's event handler: text, tool calls and reasoning into the batch; the stop
    reason and usage into the outcome; True at the end (`metadata` after `messageStop`)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, int] = {}  # contentBlockIndex -> the call's place in the answer

    def __call__(self, frame: Frame, outcome: StreamOutcome, batch: Batch) -> bool:
        name = frame.name
        if name == "contentBlockDelta":
            event = object_at(parse_event(frame.payload), "a contentBlockDelta event")
            self._delta(event, batch)
        elif name == "contentBlockStart":
            event = object_at(parse_event(frame.payload), "a contentBlockStart event")
            use = obj(obj(event, "start"), "toolUse")
            if use:
                index = len(self._calls)
                self._calls[count(event, "contentBlockIndex") or 0] = index
                call_id, tool = text(use, "toolUseId") or "", text(use, "name") or ""
                batch.append(ToolCallStart(index, call_id, tool))
        elif name == "contentBlockStop":
            event = object_at(parse_event(frame.payload), "a contentBlockStop event")
            ended = self._calls.get(count(event, "contentBlockIndex") or 0)
            if ended is not None:
                batch.append(ToolCallEnd(ended))
        elif name == "messageStop":
            event = object_at(parse_event(frame.payload), "a messageStop event")
            outcome.finish_reason = text(event, "stopReason") or "end_turn"
        elif name == "metadata":
            event = object_at(parse_event(frame.payload), "a metadata event")
            usage = obj(event, "usage")
            outcome.usage = Usage(count(usage, "inputTokens"), count(usage, "outputTokens"))
            return outcome.finish_reason is not None  # metadata follows messageStop: the end
        return False

    def _delta(self, event: dict[str, Any], batch: Batch) -> None:
        delta = obj(event, "delta")
        if piece := text(delta, "text"):
            batch.append(piece)
            return
        use = obj(delta, "toolUse")
        if use:
            index = self._calls.get(count(event, "contentBlockIndex") or 0)
            if index is None:
                raise UpstreamProtocolError("the upstream sent tool input for no tool call")
            if fragment := text(use, "input"):
                batch.append(ToolCallDelta(index, fragment))
            return
        reasoning = obj(delta, "reasoningContent")
        if thought := text(reasoning, "text"):
            batch.append(ReasoningDelta(thought))
        elif signature := text(reasoning, "signature"):
            batch.append(ReasoningEnd(signature, ORIGIN))
        elif redacted := text(reasoning, "redactedContent"):
            batch.append(ReasoningEnd(redacted, ORIGIN, redacted=True))
