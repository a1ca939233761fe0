"""OpenAI's Responses API spoken to clients on the translated path (SPEC §4.10, §4.9).

A Responses request on any upstream but an `api = "responses"` one is read here into the
neutral request (`gateway.parts`), and the upstream's deltas are written back as Responses
events. The request side:

- `input`: a string, or items: messages (roles user, assistant, system, developer; text,
  images, files), `function_call` / `function_call_output`, `custom_tool_call(_output)`,
  `reasoning` (its summary as text; its `encrypted_content` only when this gateway made it,
  which carries the signature of the upstream that made it, tagged `gw1.<origin>.`). System
  and developer text, and `instructions`, become the system prompt, in order. Item ids are
  accepted, never resolved.
- `tools`: `function` tools as they are; `custom` tools as a function of one string parameter
  `input`; `namespace` tools flattened to `<namespace>__<tool>`. Hosted tools only OpenAI runs
  are left out (named in `X-Gateway-Dropped-Tools`), and 400 when `tool_choice` forces one.
- `tool_choice`, `parallel_tool_calls`, `max_output_tokens`, `temperature`, `top_p`,
  `reasoning.effort`, `text.format` are mapped; Codex's bookkeeping fields are accepted.

The stream side (`ResponsesEncoder`): `response.created`, `response.in_progress`, then per
output item `response.output_item.added`, its deltas and `.done` events and
`response.output_item.done`, and last `response.completed` with usage (or
`response.incomplete`; `response.failed` for a failure), every event numbered by
`sequence_number` from 0. A call of a custom tool comes back as a `custom_tool_call` item whose
`input` is the string argument; a flattened call as its tool's name and `namespace`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import BadRequest, GatewayError, InvalidRequest
from gateway.models import Attempt
from gateway.parts import (
    AnswerBlock,
    ContentPart,
    Document,
    Image,
    JsonFormat,
    Reasoning,
    ReasoningControl,
    ReasoningDelta,
    ReasoningEnd,
    StreamPart,
    Text,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolSpec,
    client_signature,
    signature_origin,
)
from gateway.providers.base import ChatMessage, ChatRequest, Role, Usage
from gateway.relay import BuildRequest, Relay
from gateway.responses import Encoder

__all__ = [
    "ResponsesEncoder",
    "ResponsesRequest",
    "ToolNames",
    "output_items",
    "parse_request",
    "response_object",
]

log = logging.getLogger("gateway.responses")

# Tools OpenAI runs itself: no other upstream can (SPEC §4.10).
_HOSTED = (
    "web_search",
    "file_search",
    "code_interpreter",
    "computer",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "tool_search",
)
_SYSTEM_ROLES = ("system", "developer")
# Fields that name state only OpenAI keeps (a conversation object, a stored prompt) or ask it
# to run the response later: refused rather than silently ignored.
_NEEDS_OPENAI = ("conversation", "prompt", "background")
MAX_NAME = 64  # a function name's limit at OpenAI, and a tool id's everywhere (SPEC §4.9)
# The upstream kind whose signatures `encrypted_content` holds as they are: OpenAI's Responses
# API, never an upstream of this path, so every signature here comes tagged with its origin
# (`gateway.parts.client_signature`), its first letter saying whether it is redacted.
ORIGIN = "openai-responses"
_CUSTOM_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's free-form input."}},
    "required": ["input"],
    "additionalProperties": False,
}


def _hosted(kind: str) -> bool:
    return kind.startswith(_HOSTED)


@dataclass
class ToolNames:
    """The upstream's function names for the client's tools, and the way back."""

    custom: set[str] = field(default_factory=set)  # upstream names of custom tools
    flattened: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (ns, tool)

    def upstream(self, name: str, namespace: str | None) -> str:
        if not namespace:
            return name
        flat = f"{namespace}__{name}"
        if len(flat) > MAX_NAME:
            raise BadRequest(f"tool {namespace}.{name}: the flattened name {flat!r} is too long")
        self.flattened[flat] = (namespace, name)
        return flat

    def client(self, name: str) -> tuple[str, str | None]:
        """The client's name and namespace of an upstream function name."""
        if name in self.flattened:
            namespace, tool = self.flattened[name]
            return tool, namespace
        return name, None


@dataclass
class ResponsesRequest:
    """A Responses body read for the translated path, and what its response echoes."""

    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    items: list[dict[str, Any]]  # the input as items (a string input made one message)
    messages: tuple[ChatMessage, ...]
    system: str | None
    tools: tuple[ToolSpec, ...]
    names: ToolNames
    dropped: tuple[str, ...]
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    reasoning: ReasoningControl | None
    response_format: JsonFormat | None
    echo: dict[str, Any]  # the request's fields the response object repeats

    def builder(self) -> BuildRequest:
        def build(attempt: Attempt) -> ChatRequest:
            params = attempt.params
            system = self.system
            if system is None and isinstance(params.get("system"), str) and params["system"]:
                system = params["system"]
            stop = params.get("stop")
            known = ("max_tokens", "temperature", "top_p", "stop", "system")
            return ChatRequest(
                model=attempt.upstream_model,
                messages=self.messages,
                system=system,
                max_tokens=_pick(self.max_tokens, params, "max_tokens"),
                temperature=_pick(self.temperature, params, "temperature"),
                top_p=_pick(self.top_p, params, "top_p"),
                stop=(stop,) if isinstance(stop, str) else tuple(stop) if stop else None,
                extra={k: v for k, v in params.items() if k not in known},
                tools=self.tools,
                tool_choice=self.tool_choice,
                parallel_tool_calls=self.parallel_tool_calls,
                response_format=self.response_format,
                reasoning=self.reasoning,
            )

        return build


def _pick(value: Any, params: Any, key: str) -> Any:
    return value if value is not None else params.get(key)


# ---- reading a request ----------------------------------------------------------------------


def parse_request(data: dict[str, Any], history: list[dict[str, Any]]) -> ResponsesRequest:
    """A Responses body (already a JSON object) for the translated path; `history` is the
    stored conversation `previous_response_id` continues (its input and output items)."""
    model = data.get("model")
    if not isinstance(model, str):
        raise InvalidRequest("model: a string is required")
    for name in _NEEDS_OPENAI:
        if data.get(name) not in (None, False):
            raise BadRequest(f"{name}: needs OpenAI's own state; this model cannot use it")
    items = history + _input_items(data.get("input"))
    names = ToolNames()
    tools, dropped = _tools(data.get("tools"), names)
    if dropped:
        log.debug("hosted tools left out (this upstream cannot run them): %s", dropped)
    systems = [data["instructions"]] if isinstance(data.get("instructions"), str) else []
    messages = _messages(items, names, systems)
    text_format = _dict(data, "text").get("format")
    reasoning = _dict(data, "reasoning")
    return ResponsesRequest(
        model=model,
        stream=_bool(data, "stream", False),
        store=_bool(data, "store", True),
        previous_response_id=data.get("previous_response_id"),
        items=items,
        messages=messages,
        system="\n\n".join(systems) if systems else None,
        tools=tools,
        names=names,
        dropped=dropped,
        tool_choice=_tool_choice(data.get("tool_choice"), names),
        parallel_tool_calls=_bool(data, "parallel_tool_calls", None),
        max_tokens=_int(data, "max_output_tokens"),
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        reasoning=_reasoning(reasoning),
        response_format=_format(text_format),
        echo={
            "instructions": data.get("instructions"),
            "tools": data.get("tools") or [],
            "tool_choice": data.get("tool_choice", "auto"),
            "parallel_tool_calls": data.get("parallel_tool_calls", True),
            "metadata": data.get("metadata") or {},
            "max_output_tokens": data.get("max_output_tokens"),
            "temperature": data.get("temperature"),
            "top_p": data.get("top_p"),
            "reasoning": reasoning or None,
            "text": data.get("text") or {"format": {"type": "text"}},
            "store": _bool(data, "store", True),
            "previous_response_id": data.get("previous_response_id"),
        },
    )


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{key}: an object is required")
    return value


def _bool(data: dict[str, Any], key: str, default: Any) -> Any:
    value = data.get(key, default)
    if value is None or isinstance(value, bool):
        return default if value is None else value
    raise InvalidRequest(f"{key}: a boolean is required")


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise InvalidRequest(f"{key}: a whole number from 1 is required")
    return value


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{key}: a number from {low} to {high} is required")
    return float(value)


def _input_items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidRequest("input: a string or a list of items is required")
    return value


def _messages(
    items: list[dict[str, Any]], names: ToolNames, systems: list[str]
) -> tuple[ChatMessage, ...]:
    """The items as alternating messages: consecutive items of one role share a message."""
    turns: list[tuple[Role, list[ContentPart]]] = []
    for index, item in enumerate(items):
        read = _item(item, names, f"input.{index}")
        if read is None:
            continue
        role, parts = read
        if role == "system":
            systems.append("".join(p.text for p in parts if isinstance(p, Text)))
        elif turns and turns[-1][0] == role:
            turns[-1][1].extend(parts)
        else:
            turns.append((role, list(parts)))
    return tuple(ChatMessage(role, _content(parts)) for role, parts in turns)


def _content(parts: list[ContentPart]) -> str | tuple[ContentPart, ...]:
    if all(isinstance(part, Text) for part in parts):
        return "".join(part.text for part in parts if isinstance(part, Text))
    return tuple(parts)


def _item(
    item: dict[str, Any], names: ToolNames, where: str
) -> tuple[Role, list[ContentPart]] | None:
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        name = names.upstream(_text(item, "name", where), item.get("namespace"))
        arguments = item.get("arguments", "")
        return "assistant", [ToolCall(_call_id(item, where), name, _string(arguments, where))]
    if kind == "custom_tool_call":
        name = names.upstream(_text(item, "name", where), item.get("namespace"))
        arguments = json.dumps({"input": _string(item.get("input", ""), where)})
        return "assistant", [ToolCall(_call_id(item, where), name, arguments)]
    if kind in ("function_call_output", "custom_tool_call_output"):
        return "user", [ToolResult(_call_id(item, where), _output(item.get("output"), where))]
    if kind == "reasoning":
        return _reasoning_item(item)
    if kind == "item_reference":
        raise BadRequest(f"{where}: item_reference needs the item stored; send the item itself")
    raise BadRequest(f"{where}: input items of type {kind!r} are not supported on this model")


def _message(item: dict[str, Any], where: str) -> tuple[Role, list[ContentPart]]:
    role = item.get("role")
    if role not in ("user", "assistant", *_SYSTEM_ROLES):
        raise InvalidRequest(f"{where}.role: one of user, assistant, system, developer")
    content = item.get("content")
    if isinstance(content, str):
        parts: list[ContentPart] = [Text(content)]
    elif isinstance(content, list):
        parts = [_part(part, f"{where}.content.{n}") for n, part in enumerate(content)]
    else:
        raise InvalidRequest(f"{where}.content: text or a list of parts is required")
    if role in _SYSTEM_ROLES:
        if not all(isinstance(part, Text) for part in parts):
            raise BadRequest(f"{where}: {role} messages carry text only")
        return "system", parts
    return ("assistant" if role == "assistant" else "user"), parts


def _part(part: Any, where: str) -> ContentPart:
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where}: a content part must be an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return Text(_text(part, "text", where))
    if kind == "refusal":
        return Text(_text(part, "refusal", where))
    if kind == "input_image":
        return _image(part, where)
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data.startswith("data:"):
            raise BadRequest(f"{where}: files are carried as file_data data URLs only")
        media_type, _, payload = data[5:].partition(";base64,")
        return Document(media_type or None, payload, title=part.get("filename"))
    raise BadRequest(f"{where}: content parts of type {kind!r} are not supported on this model")


def _image(part: dict[str, Any], where: str) -> Image:
    url = part.get("image_url")
    if not isinstance(url, str):
        raise BadRequest(f"{where}: images are carried as image_url (file_id needs OpenAI)")
    if url.startswith("data:"):
        media_type, _, payload = url[5:].partition(";base64,")
        if not payload:
            raise BadRequest(f"{where}: a data URL image must be base64")
        return Image(media_type or None, payload)
    if url.startswith("https://"):
        return Image(url=url)
    raise BadRequest(f"{where}: an image URL must be https:// or a data URL")


def _output(value: Any, where: str) -> str | tuple[Text | Image, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts: list[Text | Image] = []
        for n, part in enumerate(value):
            read = _part(part, f"{where}.output.{n}")
            if not isinstance(read, Text | Image):
                raise BadRequest(f"{where}.output.{n}: tool outputs carry text and images")
            parts.append(read)
        return tuple(parts)
    raise InvalidRequest(f"{where}.output: text or a list of parts is required")


def _reasoning_item(item: dict[str, Any]) -> tuple[Role, list[ContentPart]] | None:
    """Earlier reasoning: its summary's text, and the signature when this gateway made the
    encrypted content (an upstream's own encrypted reasoning goes only to that upstream)."""
    summary = item.get("summary")
    text = ""
    if isinstance(summary, list):
        text = "".join(part.get("text", "") for part in summary if isinstance(part, dict))
    encrypted = item.get("encrypted_content")
    if isinstance(encrypted, str) and encrypted:
        signed, origin = signature_origin(encrypted, ORIGIN)
        kind, _, signature = signed.partition(":")
        if origin != ORIGIN and kind in ("r", "s") and signature:
            return "assistant", [Reasoning(text, signature, origin, kind == "r")]
    return ("assistant", [Reasoning(text)]) if text else None


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.{key}: a string is required")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: arguments and input are strings")
    return value


def _call_id(item: dict[str, Any], where: str) -> str:
    call_id = _text(item, "call_id", where)
    if not 1 <= len(call_id) <= 256:
        raise InvalidRequest(f"{where}.call_id: 1 to 256 characters")
    return call_id


def _tools(value: Any, names: ToolNames) -> tuple[tuple[ToolSpec, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise InvalidRequest("tools: a list of tools is required")
    specs: list[ToolSpec] = []
    dropped: list[str] = []
    for index, tool in enumerate(value):
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise InvalidRequest(f"tools.{index}.type: a string is required")
        if kind == "namespace":
            namespace = _text(tool, "name", f"tools.{index}")
            inner = tool.get("tools")
            if not isinstance(inner, list) or not all(isinstance(t, dict) for t in inner):
                raise InvalidRequest(f"tools.{index}.tools: a list of tools is required")
            for n, each in enumerate(inner):
                specs.append(_tool(each, names, f"tools.{index}.tools.{n}", namespace))
        elif _hosted(kind):
            dropped.append(kind)
        else:
            specs.append(_tool(tool, names, f"tools.{index}", None))
    return tuple(specs), tuple(dropped)


def _tool(tool: dict[str, Any], names: ToolNames, where: str, namespace: str | None) -> ToolSpec:
    kind = tool.get("type")
    name = names.upstream(_text(tool, "name", where), namespace)
    description = tool.get("description")
    description = description if isinstance(description, str) else None
    if kind == "function":
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"{where}.parameters: a JSON Schema object is required")
        return ToolSpec(name, description, parameters or {"type": "object", "properties": {}})
    if kind == "custom":
        names.custom.add(name)
        return ToolSpec(name, description, dict(_CUSTOM_SCHEMA))
    raise BadRequest(f"{where}: tools of type {kind!r} are not supported on this model")


def _tool_choice(value: Any, names: ToolNames) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict):
        kind = value.get("type")
        if kind in ("function", "custom") and isinstance(value.get("name"), str):
            return ToolChoice("tool", names.upstream(value["name"], value.get("namespace")))
        if isinstance(kind, str) and _hosted(kind):
            raise BadRequest(
                f"tool_choice: the hosted tool {kind!r} runs only on OpenAI's Responses API; "
                "this model cannot run it"
            )
        if kind == "allowed_tools":
            raise BadRequest("tool_choice: allowed_tools is not supported on this model")
    raise InvalidRequest("tool_choice: auto, none, required or a named tool")


def _reasoning(reasoning: dict[str, Any]) -> ReasoningControl | None:
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str):
        raise InvalidRequest("reasoning.effort: a string is required")
    if effort == "none":
        return ReasoningControl(enabled=False)
    return ReasoningControl(effort=effort)


def _format(value: Any) -> JsonFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("text.format: an object is required")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JsonFormat()
    if kind == "json_schema" and isinstance(value.get("schema"), dict):
        strict = value.get("strict")
        return JsonFormat(value["schema"], value.get("name"), strict if strict else None)
    raise InvalidRequest("text.format: text, json_object, or json_schema with a schema")


# ---- writing a response -----------------------------------------------------------------------


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _status(finish: str | None) -> tuple[str, dict[str, str] | None]:
    if finish in ("length", "max_tokens", "MAX_TOKENS", "model_context_window_exceeded"):
        return "incomplete", {"reason": "max_output_tokens"}
    if finish in ("content_filter", "refusal", "SAFETY"):
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(
    request: ResponsesRequest,
    response_id: str,
    relay: Relay,
    output: list[dict[str, Any]],
    status: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """The `response` object (stream: false, and every event that carries one)."""
    incomplete = None
    if status is None:
        status, incomplete = _status(relay.outcome.finish_reason)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at or int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": relay.model,
        "output": output,
        "usage": _usage(relay.outcome.usage) if status != "in_progress" else None,
        **request.echo,
    }


def _signed(part: ReasoningEnd | Reasoning) -> str | None:
    if not part.signature or not part.origin:
        return None
    kind = "r" if part.redacted else "s"
    return client_signature(f"{kind}:{part.signature}", part.origin, ORIGIN)


def _reasoning_out(item_id: str, text: str, encrypted: str | None) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": summary, "encrypted_content": encrypted}


def _message_out(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content if status == "completed" else [],
    }


def _call_out(
    names: ToolNames, item_id: str, call_id: str, name: str, arguments: str
) -> dict[str, Any]:
    """A call as the client declared its tool: a function call, or a custom tool's call
    whose `input` is the one string argument."""
    tool, namespace = names.client(name)
    item: dict[str, Any]
    item_id = item_id.removeprefix("call_")
    if name in names.custom:
        item = {"id": "ctc_" + item_id, "type": "custom_tool_call", "status": "completed"}
        item.update(call_id=call_id, name=tool, input=_custom_input(arguments))
    else:
        item = {"id": "fc_" + item_id, "type": "function_call", "status": "completed"}
        item.update(call_id=call_id, name=tool, arguments=arguments)
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _custom_input(arguments: str) -> str:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get("input"), str):
        return str(parsed["input"])
    return arguments


def output_items(blocks: list[AnswerBlock], names: ToolNames, prefix: str) -> list[dict[str, Any]]:
    """A whole answer's blocks as Responses output items (stream: false)."""
    items: list[dict[str, Any]] = []
    for n, block in enumerate(blocks):
        if isinstance(block, Text):
            items.append(_message_out(f"msg_{prefix}_{n}", block.text))
        elif isinstance(block, Reasoning):
            items.append(_reasoning_out(f"rs_{prefix}_{n}", block.text, _signed(block)))
        else:
            item_id = f"{prefix}_{n}"
            items.append(_call_out(names, item_id, block.id, block.name, block.arguments))
    return items


Stored = Callable[[str, dict[str, Any]], None]  # told a response id and its response object


class ResponsesEncoder(Encoder):
    """The translated stream as Responses events, numbered from 0. Items take output indexes
    in the order they open; text and reasoning items close when anything else begins, calls
    when the upstream ends them."""

    media_type = "text/event-stream"

    def __init__(
        self,
        relay: Relay,
        stream_id: str,
        request: ResponsesRequest,
        stored: Stored | None = None,
    ) -> None:
        super().__init__(relay, stream_id)
        self.request = request
        self.response_id = f"resp_{stream_id}"
        self.stored = stored  # told the response when it completes (store: true)
        self.created_at = int(time.time())
        self.sequence = 0
        self._items = 0  # output indexes given so far
        self._done: dict[int, dict[str, Any]] = {}  # output index -> the finished item
        self._open: tuple[int, str, str] | None = None  # the message or reasoning under way
        self._text: list[str] = []
        self._calls: dict[int, tuple[int, dict[str, Any], list[str]]] = {}  # call index -> slot

    @property
    def output(self) -> list[dict[str, Any]]:
        return [self._done[index] for index in sorted(self._done)]

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str | None = None) -> dict[str, Any]:
        return response_object(
            self.request, self.response_id, self.relay, self.output, status, self.created_at
        )

    def opening(self) -> bytes:
        head = self._response("in_progress")
        created = self._event("response.created", response=head)
        return created + self._event("response.in_progress", response=head)

    def _next(self, prefix: str) -> tuple[int, str]:
        index = self._items
        self._items += 1
        return index, f"{prefix}_{self.stream_id}_{index}"

    def delta(self, text: str) -> bytes:
        self.deltas += 1
        head = b""
        if self._open is None or self._open[1] != "message":
            head = self._close_open() + self._open_item("message")
        self._text.append(text)
        return head + self._event(
            "response.output_text.delta", **self._where(), content_index=0, delta=text, logprobs=[]
        )

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open[2], "output_index": self._open[0]}

    def _open_item(self, kind: str) -> bytes:
        index, item_id = self._next("msg" if kind == "message" else "rs")
        self._open = (index, kind, item_id)
        where = {"item_id": item_id, "output_index": index}
        if kind == "message":
            added = _message_out(item_id, "", "in_progress")
            part = {"type": "output_text", "text": "", "annotations": []}
            return self._event(
                "response.output_item.added", output_index=index, item=added
            ) + self._event("response.content_part.added", **where, content_index=0, part=part)
        added = _reasoning_out(item_id, "", None)
        return self._event(
            "response.output_item.added", output_index=index, item=added
        ) + self._event(
            "response.reasoning_summary_part.added",
            **where,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )

    def _close_open(self, end: ReasoningEnd | None = None) -> bytes:
        if self._open is None:
            return b""
        index, kind, item_id = self._open
        text = "".join(self._text)
        self._text.clear()
        self._open = None
        where = {"item_id": item_id, "output_index": index}
        if kind == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            item = _message_out(item_id, text)
            frames = self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            frames += self._event("response.content_part.done", **where, content_index=0, part=part)
        else:
            item = _reasoning_out(item_id, text, _signed(end) if end else None)
            part = {"type": "summary_text", "text": text}
            frames = self._event(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=text
            )
            frames += self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
        self._done[index] = item
        return frames + self._event("response.output_item.done", output_index=index, item=item)

    def part(self, part: StreamPart) -> bytes:
        self.deltas += 1
        if isinstance(part, ReasoningDelta | ReasoningEnd):
            head = b""
            if self._open is None or self._open[1] != "reasoning":
                head = self._close_open() + self._open_item("reasoning")
            if isinstance(part, ReasoningEnd):
                return head + self._close_open(part)
            self._text.append(part.text)
            return head + self._event(
                "response.reasoning_summary_text.delta",
                **self._where(),
                summary_index=0,
                delta=part.text,
            )
        if isinstance(part, ToolCallStart):
            return self._start_call(part)
        if isinstance(part, ToolCallDelta):
            return self._call_delta(part)
        return self._end_call(part.index)

    def _start_call(self, part: ToolCallStart) -> bytes:
        head = self._close_open()
        index, item_id = self._next("call")
        item = _call_out(self.request.names, item_id, part.id, part.name, "")
        item["status"] = "in_progress"
        self._calls[part.index] = (index, item, [])
        return head + self._event("response.output_item.added", output_index=index, item=item)

    def _call_delta(self, part: ToolCallDelta) -> bytes:
        slot = self._calls.get(part.index)
        if slot is None:
            return b""
        index, item, arguments = slot
        arguments.append(part.arguments)
        if item["type"] == "custom_tool_call":
            return b""  # its input is the string inside the arguments: sent whole at the end
        return self._event(
            "response.function_call_arguments.delta",
            item_id=item["id"],
            output_index=index,
            delta=part.arguments,
        )

    def _end_call(self, call: int) -> bytes:
        slot = self._calls.pop(call, None)
        if slot is None:
            return b""
        index, item, pieces = slot
        arguments = "".join(pieces)
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "custom_tool_call":
            value = _custom_input(arguments)
            item = {**item, "status": "completed", "input": value}
            frames = self._event("response.custom_tool_call_input.delta", **where, delta=value)
            frames += self._event("response.custom_tool_call_input.done", **where, input=value)
        else:
            item = {**item, "status": "completed", "arguments": arguments}
            frames = self._event(
                "response.function_call_arguments.done", **where, arguments=arguments
            )
        self._done[index] = item
        return frames + self._event("response.output_item.done", output_index=index, item=item)

    def closing(self) -> list[bytes]:
        frames = self._close_open()
        for call in sorted(self._calls):  # calls the upstream never ended: ended with it
            frames += self._end_call(call)
        response = self._response()
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        if self.stored is not None:
            self.stored(self.response_id, response)
        return [frames, self._event(kind, response=response)]

    def error_frame(self, error: GatewayError) -> bytes:
        response = self._response("failed")
        response["error"] = {"code": error.type, "message": error.message}
        return self._event("response.failed", response=response)
