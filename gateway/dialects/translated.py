"""The translated path's request (SPEC §4.9): a client's body in no dialect's words.

Each client dialect (`openai_in`, `anthropic_in`, `ui_messages`) reads its body into a
`Translated`: messages whose content is text or `gateway.parts` content parts (tool calls in
assistant messages, tool results in the next user message, images, documents, earlier
reasoning), the system text, and the controls (tools, tool choice, structured output,
reasoning). `Translated.build` then makes each attempt's adapter request, with the model
entry's `params` merged exactly as for `/stream` (`gateway.models.to_chat_request`).

What the model would be asked differently and cannot be carried is a 400 naming the field,
raised while reading; hints (caching, billing, display) are dropped here, each logged at debug
(`dropped`) and listed in docs/DECISIONS.md. Also here, because every dialect needs them:
data URLs, the shape checks of tool definitions and of tool results' call ids, and reading
back a signature from the Anthropic dialect's slot (`signature_in`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from gateway.errors import BadRequest, InvalidRequest
from gateway.models import Attempt, to_chat_request
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    JsonFormat,
    ReasoningControl,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    signature_origin,
)
from gateway.providers.base import ChatMessage, ChatRequest, Role
from gateway.schemas import StreamRequest

__all__ = [
    "Translated",
    "check_results",
    "content_of",
    "dropped",
    "json_text",
    "media_of",
    "schema_of",
    "signature_in",
    "signed_call_id",
    "tool_names",
    "unsigned_call_id",
]

log = logging.getLogger("gateway.dialects")


@dataclass(frozen=True, slots=True)
class Translated:
    """A client's request read into the neutral form, ready to build any attempt's request."""

    model: str | None
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: JsonFormat | None = None
    reasoning: ReasoningControl | None = None
    openai_params: Mapping[str, Any] = field(default_factory=dict)
    anthropic_params: Mapping[str, Any] = field(default_factory=dict)
    anthropic_headers: Mapping[str, str] = field(default_factory=dict)

    def build(self, attempt: Attempt) -> ChatRequest:
        """The attempt's adapter request: the entry's params merged under the client's
        scalars by the one function that does it for every route, then the parts."""
        scalars = StreamRequest.model_construct(
            model=self.model,
            prompt="",
            messages=None,
            system=self.system,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop,
        )
        return replace(
            to_chat_request(attempt, request=scalars),
            messages=self.messages,
            tools=self.tools,
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            response_format=self.response_format,
            reasoning=self.reasoning,
            openai_params=self.openai_params,
            anthropic_params=self.anthropic_params,
            anthropic_headers=self.anthropic_headers,
        )


def dropped(name: str, why: str) -> None:
    """A hint the target cannot use, left out (SPEC §4.9: hints are not requests)."""
    log.debug("translated path: dropped %s (%s)", name, why)


def content_of(parts: list[ContentPart], join: str) -> str | tuple[ContentPart, ...]:
    """A message's content: plain text when it has only text (the common case, which the
    adapters carry as a string), else its parts."""
    if all(isinstance(part, Text) for part in parts):
        return join.join(part.text for part in parts if isinstance(part, Text))
    return tuple(parts)


def message(role: Role, parts: list[ContentPart], join: str = "") -> ChatMessage:
    return ChatMessage(role, content_of(parts, join))


def json_text(value: object, where: str) -> str:
    """A JSON value (a call's input, a tool's output) as JSON text."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        raise BadRequest(f"{where}: nested too deeply") from None


# ---- images and documents ------------------------------------------------------------------

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[^;,]*)*;base64,([A-Za-z0-9+/=\s]*)")


def media_of(url: str, where: str, title: str | None = None) -> Image | Document:
    """A data URL (inline base64) or an `https` URL (fetched by the upstream, never by the
    gateway) as an image or a document, by its media type; anything else is a 400."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise InvalidRequest(f"{where}: not a base64 data URL (data:<type>;base64,<data>)")
        media_type, data = match.group(1).lower(), match.group(2)
        if media_type.startswith("image/"):
            return Image(media_type=media_type, data=data)
        return Document(media_type=media_type, data=data, title=title)
    if not url.startswith("https://") or len(url) > 8192:
        raise BadRequest(f"{where}: only data URLs and https URLs are accepted")
    return Image(url=url)


# ---- tools ---------------------------------------------------------------------------------

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def schema_of(schema: object, where: str) -> dict[str, Any]:
    """A tool's parameters schema: a JSON Schema object whose root is an object (what every
    upstream requires); absent or empty means no parameters."""
    if schema is None or schema == {}:
        return dict(_NO_PARAMETERS)
    if not isinstance(schema, dict):
        raise BadRequest(f"{where}: a tool's schema must be a JSON Schema object")
    kind = schema.get("type", "object")
    if kind != "object":
        raise BadRequest(f"{where}.type: a tool's schema must describe an object, not {kind!r}")
    properties = schema.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise BadRequest(f"{where}.properties: must be an object")
    return schema


def tool_names(tools: Iterable[ToolSpec], where: str) -> frozenset[str]:
    """The tools' names, each once (two tools of one name would be one the model can't tell
    apart)."""
    names: set[str] = set()
    for tool in tools:
        if tool.name in names:
            raise BadRequest(f"{where}: two tools are named {tool.name[:64]!r}")
        names.add(tool.name)
    return frozenset(names)


def check_choice(choice: ToolChoice | None, names: frozenset[str], where: str) -> None:
    """A forced choice needs tools to choose from, and a named one a tool of that name."""
    if choice is None or choice.mode in ("auto", "none"):
        return
    if not names:
        raise BadRequest(f"{where}: a forced tool choice needs `tools`")
    if choice.mode == "tool" and choice.name not in names:
        raise BadRequest(f"{where}: no tool is named {str(choice.name)[:64]!r}")


def check_results(messages: Iterable[ChatMessage]) -> tuple[ChatMessage, ...]:
    """Every tool result answers a call an earlier assistant message made, once; each result
    gets its call's tool name (the upstreams that match results by name need it)."""
    calls: dict[str, str] = {}  # call id -> tool name
    answered: set[str] = set()
    checked = []
    for number, each in enumerate(messages):
        if isinstance(each.content, str):
            checked.append(each)
            continue
        parts: list[ContentPart] = []
        for part in each.content:
            if isinstance(part, ToolCall):
                calls[part.id] = part.name
            elif isinstance(part, ToolResult):
                part = _answered(part, calls, answered, number)
            parts.append(part)
        checked.append(ChatMessage(each.role, tuple(parts)))
    return tuple(checked)


def _answered(
    result: ToolResult, calls: dict[str, str], answered: set[str], number: int
) -> ToolResult:
    name = calls.get(result.call_id)
    if name is None:
        raise BadRequest(
            f"messages.{number}: a tool result answers {result.call_id[:64]!r}, "
            "which no earlier assistant message called"
        )
    if result.call_id in answered:
        raise BadRequest(f"messages.{number}: the call {result.call_id[:64]!r} has two results")
    answered.add(result.call_id)
    return replace(result, name=name)


def signature_in(value: str) -> tuple[str | None, str | None]:
    """(signature, origin) of what an Anthropic client sent back (`parts.signature_origin`,
    whose tag `client_signature` wrote); an empty one is none."""
    if not value:
        return None, None
    return signature_origin(value, "anthropic")


# A Gemini thought signature behind an OpenAI Chat client, which has no slot for one, rides in
# the id the client is given for the call it signed (SPEC §4.9: "rides in the call id"), and
# comes back with it: `<id>~gw1.<origin>.<signature>` (base64 and gateway ids have no '~').
_SIGNED = "~gw1."
SIGNED_ORIGINS = frozenset({"gemini"})  # self-contained signatures (Anthropic's need the text)


def signed_call_id(call_id: str, signature: str, origin: str) -> str:
    return f"{call_id}{_SIGNED}{origin}.{signature}"


def unsigned_call_id(call_id: str) -> tuple[str, str | None, str | None]:
    """(the call's own id, signature, origin) of an id `signed_call_id` wrote."""
    own, tag, rest = call_id.partition(_SIGNED)
    origin, dot, signature = rest.partition(".")
    if not tag or not own or not dot or not origin or not signature:
        return call_id, None, None
    return own, signature, origin
