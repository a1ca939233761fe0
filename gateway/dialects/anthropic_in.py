"""Anthropic Messages requests on the translated path (SPEC §4.7, §4.9).

The body is validated like Anthropic validates it (unknown fields, a missing `max_tokens`, an
out-of-range `temperature` are 400 `invalid_request_error`) and read into a `Translated`:

- `system` (a string or text blocks) and `role: "system"` messages inside `messages` (Claude
  Code sends one) join the system prompt, in order;
- content blocks: `text`, `image` and `document` (base64, plain text, or an https URL the
  upstream fetches), `tool_use` (assistant), `tool_result` (user; a string or text and image
  blocks, `is_error`), `thinking` and `redacted_thinking` with their signatures (whose origin
  is Anthropic, or the upstream named in the gateway's envelope, `translated.signature_in`);
- `tools` (custom tools; `defer_loading` placeholders are dropped, `input_examples` are added
  to the description; server tools, which need Anthropic's servers, are a 400 naming them),
  `tool_choice` (with `disable_parallel_tool_use`), `thinking` (enabled with a budget,
  adaptive, disabled), `output_config.effort` and `.format`;
- hints dropped (docs/DECISIONS.md): `cache_control` everywhere, `context_management`,
  `metadata` (its `user_id` keys the sticky deployment), `citations`, thinking's `display`;
  the `anthropic-beta` header reaches Anthropic upstreams only.

Anthropic-only fields (`top_k`, `metadata`, `service_tier`, ...) and the client's
`anthropic-version` / `anthropic-beta` headers still reach Anthropic upstreams.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.dialects.translated import (
    Translated,
    check_choice,
    check_results,
    dropped,
    json_text,
    message,
    schema_of,
    signature_in,
    tool_names,
)
from gateway.errors import BadRequest
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    JsonFormat,
    Reasoning,
    ReasoningControl,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from gateway.providers.base import ChatMessage
from gateway.schemas import MAX_TEXT, ModelName

__all__ = ["ANTHROPIC_ONLY", "ContentBlock", "MessagesRequest"]

TextField = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ContentBlock(BaseModel):
    # Blocks carry type-specific fields; each type's are read below, the hints dropped.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=64)]
    text: TextField | None = None


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user", "assistant", "system"]
    content: TextField | Annotated[list[ContentBlock], Field(max_length=10_000)]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[str, StringConstraints(max_length=256)] | None = None


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: dict[str, Any] | None = None


# Fields only Anthropic understands, passed on to Anthropic upstreams only.
ANTHROPIC_ONLY = frozenset(
    {
        "top_k",
        "metadata",
        "service_tier",
        "inference_geo",
        "speed",
        "cache_control",
        "output_config",
    }
)


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=10_000)]
    max_tokens: int = Field(ge=1, le=10_000_000)
    system: TextField | Annotated[list[ContentBlock], Field(max_length=10_000)] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    stop_sequences: Annotated[list[StopSequence], Field(max_length=16)] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: Annotated[str, StringConstraints(max_length=64)] | None = None
    speed: Literal["standard", "fast"] | None = None
    cache_control: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    context_management: dict[str, Any] | None = None
    # Accepted and ignored: they name the client's own account or earlier responses.
    diagnostics: dict[str, Any] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=4096)] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    # Accepted only when empty: they need Anthropic's own servers.
    mcp_servers: list[Any] | None = None
    container: Any | None = None

    def translated(self, headers: Mapping[str, str] | None = None) -> Translated:
        """The request in the neutral form (a 400 naming what cannot be carried)."""
        if self.mcp_servers or self.container is not None:
            field = "mcp_servers" if self.mcp_servers else "container"
            raise BadRequest(f"{field}: needs Anthropic's own servers (an anthropic provider)")
        for name in ("cache_control", "context_management", "metadata"):
            if getattr(self, name) is not None:
                dropped(name, "a caching, trimming or billing hint")
        tools = tuple(tool for tool in map(_tool, enumerate(self.tools or ())) if tool)
        choice, parallel = _choice(self.tool_choice)
        check_choice(choice, tool_names(tools, "tools"), "tool_choice")
        systems = [] if self.system is None else [_system_text(self.system, "system")]
        messages = _messages(self.messages, systems)
        system = "\n\n".join(text for text in systems if text)
        return Translated(
            model=self.model,
            messages=messages,
            system=system or None,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_sequences or None,
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            response_format=self._format(),
            reasoning=self._reasoning(),
            anthropic_params=self.anthropic_params(),
            anthropic_headers=dict(headers or {}),
        )

    def anthropic_params(self) -> dict[str, Any]:
        fields = self.model_dump(include=set(ANTHROPIC_ONLY), exclude_none=True)
        return {key: value for key, value in fields.items() if value != {}}

    def _format(self) -> JsonFormat | None:
        spec = self.output_config.format if self.output_config is not None else None
        if spec is None:
            return None
        schema = spec.get("schema")
        if spec.get("type") != "json_schema" or not isinstance(schema, dict):
            raise BadRequest("output_config.format: a json_schema format with a schema object")
        return JsonFormat(schema=schema)

    def _reasoning(self) -> ReasoningControl | None:
        """`thinking` and `output_config.effort` (SPEC §4.9: mapped, never dropped)."""
        effort = self.output_config.effort if self.output_config is not None else None
        effort = "xhigh" if effort == "max" else effort  # the highest word others know
        thinking = self.thinking
        if thinking is None:
            return ReasoningControl(effort=effort) if effort is not None else None
        kind = thinking.get("type")
        if "display" in thinking:
            dropped("thinking.display", "how thinking is shown")
        if kind == "disabled":
            return ReasoningControl(enabled=False)
        if kind == "adaptive":
            return ReasoningControl(effort=effort)
        budget = thinking.get("budget_tokens")
        if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
            raise BadRequest("thinking: enabled (with budget_tokens), adaptive or disabled")
        if not 1 <= budget < self.max_tokens:
            raise BadRequest("thinking.budget_tokens: must be at least 1 and below max_tokens")
        return ReasoningControl(effort=effort, budget_tokens=budget)


def _system_text(content: str | list[ContentBlock], where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for number, block in enumerate(content):
        if block.type != "text" or block.text is None:
            raise BadRequest(f"{where}.{number}: system content holds text blocks only")
        texts.append(block.text)
    # Separate blocks stay separate paragraphs once joined into one string.
    return "\n\n".join(texts)


def _messages(messages: list[MessageIn], systems: list[str]) -> tuple[ChatMessage, ...]:
    out = []
    for index, each in enumerate(messages):
        where = f"messages.{index}"
        if each.role == "system":
            systems.append(_system_text(each.content, f"{where}.content"))
            continue
        if isinstance(each.content, str):
            out.append(ChatMessage(each.role, each.content))
            continue
        parts = [
            _block(f"{where}.content.{n}", block, each.role) for n, block in enumerate(each.content)
        ]
        out.append(message(each.role, [part for part in parts if part is not None], "\n\n"))
    return check_results(out)


def _block(where: str, block: ContentBlock, role: str) -> ContentPart | None:
    kind, fields = block.type, block.model_extra or {}
    if kind == "text":
        if block.text is None:
            raise BadRequest(f"{where}: a text block needs `text`")
        return Text(block.text)
    if kind in ("image", "document") and role == "user":
        return _media(where, kind, fields)
    if kind == "tool_use" and role == "assistant":
        return _tool_use(where, fields)
    if kind == "tool_result" and role == "user":
        return _tool_result(where, fields)
    if kind in ("thinking", "redacted_thinking") and role == "assistant":
        return _thinking(where, kind, fields)
    raise BadRequest(f"{where}: {kind!r} content blocks are not supported in {role} messages")


def _string(fields: dict[str, Any], name: str, where: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{name}: a string is required")
    return value


def _media(where: str, kind: str, fields: dict[str, Any]) -> Image | Document:
    source = fields.get("source")
    if not isinstance(source, dict):
        raise BadRequest(f"{where}.source: Field required")
    title = fields.get("title") if isinstance(fields.get("title"), str) else None
    source_type = source.get("type")
    if source_type == "base64":
        media_type = _string(source, "media_type", f"{where}.source")
        data = _string(source, "data", f"{where}.source")
        if kind == "image":
            return Image(media_type=media_type, data=data)
        return Document(media_type=media_type, data=data, title=title)
    if source_type == "url":
        url = _string(source, "url", f"{where}.source")
        if not url.startswith("https://"):
            raise BadRequest(f"{where}.source.url: only https URLs are accepted")
        return Image(url=url) if kind == "image" else Document(url=url, title=title)
    if source_type == "text" and kind == "document":
        text = _string(source, "data", f"{where}.source")
        data = base64.b64encode(text.encode()).decode()
        return Document(media_type="text/plain", data=data, title=title)
    raise BadRequest(f"{where}.source.type: {str(source_type)[:64]!r} is not supported")


def _tool_use(where: str, fields: dict[str, Any]) -> ToolCall:
    call_id, name = _string(fields, "id", where), _string(fields, "name", where)
    arguments = fields.get("input", {})
    if not isinstance(arguments, dict):
        raise BadRequest(f"{where}.input: a tool call's input must be an object")
    return ToolCall(call_id, name, json_text(arguments, f"{where}.input"))


def _tool_result(where: str, fields: dict[str, Any]) -> ToolResult:
    call_id = _string(fields, "tool_use_id", where)
    is_error = fields.get("is_error") is True
    content = fields.get("content", "")
    if isinstance(content, str):
        return ToolResult(call_id, content, is_error)
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content: a string or a list of blocks is required")
    parts: list[Text | Image] = []
    for number, each in enumerate(content):
        inner = f"{where}.content.{number}"
        block = each if isinstance(each, dict) else {}
        if block.get("type") == "text":
            parts.append(Text(_string(block, "text", inner)))
        elif block.get("type") == "image":
            image = _media(inner, "image", block)
            assert isinstance(image, Image)
            parts.append(image)
        else:
            kind = str(block.get("type"))[:64]
            raise BadRequest(f"{inner}: {kind!r} blocks are not supported in a tool result")
    if all(isinstance(part, Text) for part in parts):
        text = "\n\n".join(part.text for part in parts if isinstance(part, Text))
        return ToolResult(call_id, text, is_error)
    return ToolResult(call_id, tuple(parts), is_error)


def _thinking(where: str, kind: str, fields: dict[str, Any]) -> Reasoning | None:
    if kind == "redacted_thinking":
        data, origin = signature_in(_string(fields, "data", where))
        return Reasoning("", data, origin, redacted=True) if data else None
    text = _string(fields, "thinking", where)
    signature, origin = signature_in(fields.get("signature") or "")
    return Reasoning(text, signature, origin)


def _tool(numbered: tuple[int, dict[str, Any]]) -> ToolSpec | None:
    index, tool = numbered
    where = f"tools.{index}"
    if tool.get("defer_loading") is True:
        dropped(f"{where} ({str(tool.get('name'))[:64]})", "a deferred placeholder tool")
        return None
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise BadRequest(
            f"{where}: the server tool {str(kind)[:64]!r} needs Anthropic's own servers "
            "(an anthropic provider)"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise BadRequest(f"{where}.name: a name of 1 to 256 characters is required")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequest(f"{where}.description: a string is required")
    examples = tool.get("input_examples")
    if examples:  # what the model is shown: kept, in the one place every upstream has
        shown = json_text(examples, f"{where}.input_examples")
        description = (description or "") + "\n\nInput examples: " + shown
    schema = schema_of(tool.get("input_schema"), f"{where}.input_schema")
    return ToolSpec(name, description, schema)


_CHOICES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "none": "none",
    "any": "required",
    "tool": "tool",
}


def _choice(choice: dict[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    mode = _CHOICES.get(str(choice.get("type")))
    if mode is None:
        raise BadRequest("tool_choice.type: auto, any, tool or none")
    name = choice.get("name")
    if mode == "tool" and not isinstance(name, str):
        raise BadRequest("tool_choice.name: the tool to call is required")
    parallel = None if choice.get("disable_parallel_tool_use") is not True else False
    return ToolChoice(mode, name if mode == "tool" else None), parallel
