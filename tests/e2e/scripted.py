"""A scripted model behind the gateway, in each upstream dialect (OpenAI Chat, Anthropic,
Gemini, Ollama): it calls a tool while the conversation has no tool result yet, then answers
with text. Each answer is streamed as that dialect streams (a call in argument fragments where
the dialect streams them, whole where it does not), and every request is recorded, so that a
test can assert what the upstream received in its own words: the call it made, and the result
attached to it.

    upstream = ScriptedModel("gemini", plan)   # plan(tools offered, results so far) -> Turn
    async with serve(upstream) as url: ...
    upstream.received[1].json()                # the second request, as the upstream saw it
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from tests.e2e.servers import answered_lifespan, read_body

__all__ = [
    "DIALECTS",
    "Call",
    "Received",
    "ScriptedModel",
    "Turn",
    "provider_config",
    "received",
    "send_whole",
]

DIALECTS = ("openai", "anthropic", "gemini", "ollama")
GEMINI_SIGNATURE = "c2lnbmF0dXJlLWdlbWluaQ=="  # the thoughtSignature the Gemini upstream signs with


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    id: str = "call_scripted_0001"


@dataclass(frozen=True)
class Turn:
    """What the model answers: `calls` (tool calls, in order), else `text`."""

    text: str = ""
    calls: tuple[Call, ...] = ()


Plan = Callable[[list[str], list[dict[str, Any]]], Turn]


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def received(scope: Scope, receive: Receive) -> Received:
    """The request as an upstream stub received it: method, path, query, headers, body."""
    body = await read_body(receive)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    return Received(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)


async def send_whole(send: Send, status: int, media: str, body: bytes) -> None:
    """One whole response: `body`, as `media`, in a single message."""
    headers = [(b"content-type", media.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def provider_config(dialect: str, upstream_url: str, key: str) -> str:
    """A `[providers.up]` table for this dialect's scripted upstream."""
    base = f"{upstream_url}/v1" if dialect == "openai" else upstream_url
    return f"[providers.up]\ntype = '{dialect}'\nbase_url = '{base}'\napi_key = '{key}'\n"


class RecordingUpstream:
    """An upstream stub (an ASGI app) that records every request, then lets `answer` answer
    it; a request to any path but `path` gets a 404 with `not_found` as its body."""

    path = "/"
    not_found: dict[str, Any] = {"error": {"type": "not_found", "message": "no such route"}}

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await answered_lifespan(scope, receive, send):
            return
        seen = await received(scope, receive)
        self.received.append(seen)
        if self.path != "/" and (seen.method, seen.path) != ("POST", self.path):
            await send_whole(send, 404, "application/json", json.dumps(self.not_found).encode())
            return
        await self.answer(seen, send)

    async def answer(self, seen: Received, send: Send) -> None:
        raise NotImplementedError


class ScriptedModel(RecordingUpstream):
    def __init__(self, dialect: str, plan: Plan) -> None:
        assert dialect in DIALECTS
        super().__init__()
        self.dialect = dialect
        self.plan = plan

    async def answer(self, seen: Received, send: Send) -> None:
        data = seen.json()
        turn = self.plan(tools_offered(self.dialect, data), results_sent(self.dialect, data))
        if self.dialect in WHOLE and data.get("stream") is not True:  # native `stream: false`
            media, answer = "application/json", WHOLE[self.dialect](turn)
        else:
            media = "application/x-ndjson" if self.dialect == "ollama" else "text/event-stream"
            answer = ANSWERS[self.dialect](turn)
        await send_whole(send, 200, media, answer)


# --- What each dialect's request offers and carries ---------------------------------------


def tools_offered(dialect: str, body: dict[str, Any]) -> list[str]:
    tools = body.get("tools") or []
    if dialect == "anthropic":
        return [tool["name"] for tool in tools]
    if dialect == "gemini":
        return [d["name"] for group in tools for d in group.get("functionDeclarations", [])]
    return [tool["function"]["name"] for tool in tools]


def results_sent(dialect: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results in the request, as the dialect writes them."""
    if dialect == "gemini":
        return [
            part["functionResponse"]
            for content in body.get("contents", [])
            for part in content.get("parts", [])
            if "functionResponse" in part
        ]
    if dialect == "anthropic":
        return [
            block
            for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
    return [message for message in body.get("messages", []) if message.get("role") == "tool"]


def calls_sent(dialect: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant's earlier calls in the request, as the dialect writes them."""
    if dialect == "gemini":
        return [
            part
            for content in body.get("contents", [])
            for part in content.get("parts", [])
            if "functionCall" in part
        ]
    if dialect == "anthropic":
        return [
            block
            for message in body.get("messages", [])
            if message.get("role") == "assistant" and isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]
    return [
        call
        for message in body.get("messages", [])
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
    ]


# --- Each dialect's streamed answer -------------------------------------------------------


def _data(*objects: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects)


def _openai(turn: Turn) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [choice],
        }

    out = [chunk({"role": "assistant", "content": None})]
    for i, call in enumerate(turn.calls):
        arguments = json.dumps(call.arguments)
        half = len(arguments) // 2
        head = {
            "index": i,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [head]}))
        for piece in (arguments[:half], arguments[half:]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    if turn.calls:
        out.append(chunk({}, "tool_calls"))
    else:
        out += [chunk({"content": turn.text}), chunk({}, "stop")]
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    out.append(
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [],
            "usage": usage,
        }
    )
    return _data(*out) + b"data: [DONE]\n\n"


def _anthropic(turn: Turn) -> bytes:
    def event(e: dict[str, Any]) -> bytes:
        return f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()

    message = {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 1},
    }
    out = [event({"type": "message_start", "message": message})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if turn.calls:
        for call in turn.calls:
            arguments = json.dumps(call.arguments)
            half = len(arguments) // 2
            start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in (arguments[:half], arguments[half:])
            ]
            blocks.append((start, deltas))
    else:
        blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": turn.text}]))
    for index, (start, deltas) in enumerate(blocks):
        out.append(event({"type": "content_block_start", "index": index, "content_block": start}))
        out += [event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        out.append(event({"type": "content_block_stop", "index": index}))
    stop = "tool_use" if turn.calls else "end_turn"
    out.append(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            }
        )
    )
    out.append(event({"type": "message_stop"}))
    return b"".join(out)


def _gemini(turn: Turn) -> bytes:
    def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage = {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "m"}

    out: list[dict[str, Any]] = []
    for i, call in enumerate(turn.calls):  # whole calls, one per chunk; the first one signed
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        if i == 0:
            part["thoughtSignature"] = GEMINI_SIGNATURE
        out.append(chunk([part]))
    if not turn.calls:
        out.append(chunk([{"text": turn.text}]))
    out.append(chunk([{"text": ""}], "STOP"))
    return _data(*out)


def _ollama(turn: Turn) -> bytes:
    def line(message: dict[str, Any], done: bool = False) -> dict[str, Any]:
        out = {
            "model": "m",
            "message": {"role": "assistant", "content": "", **message},
            "done": done,
        }
        if done:
            out.update(done_reason="stop", prompt_eval_count=100, eval_count=20)
        return out

    lines = []
    if turn.calls:
        calls = [
            {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(turn.calls)
        ]
        lines.append(line({"tool_calls": calls}))
    else:
        lines.append(line({"content": turn.text}))
    lines.append(line({}, done=True))
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


ANSWERS: dict[str, Callable[[Turn], bytes]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "ollama": _ollama,
}


def _openai_whole(turn: Turn) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in turn.calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": "tool_calls" if turn.calls else "stop",
    }
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    completion = {
        "id": "chatcmpl-w",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": usage,
    }
    return json.dumps(completion).encode()


def _anthropic_whole(turn: Turn) -> bytes:
    content: list[dict[str, Any]] = [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in turn.calls
    ] or [{"type": "text", "text": turn.text}]
    message = {
        "id": "msg_w",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": content,
        "stop_reason": "tool_use" if turn.calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }
    return json.dumps(message).encode()


# Whole answers for the dialects whose clients reach them natively with `stream: false`.
WHOLE: dict[str, Callable[[Turn], bytes]] = {"openai": _openai_whole, "anthropic": _anthropic_whole}
