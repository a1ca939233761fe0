"""OpenAI Chat Completions requests on the translated path (SPEC §4.3, §4.9).

The body is validated strictly (OpenAI's SDKs' fields; anything else is a 422) and read into
a `Translated`: `system` and `developer` messages, wherever they are, join the system prompt in
order; text, `image_url` (data URLs and https URLs) and `file` parts become parts; an
assistant's `tool_calls` (and `reasoning_content`, as some compatible clients send it back)
become its `ToolCall` and `Reasoning` parts; consecutive `role: "tool"` messages become one
user message of `ToolResult`s. `tools`, `tool_choice`, `parallel_tool_calls`,
`response_format` and `reasoning_effort` become the request's controls. What cannot be carried
(n > 1, logprobs, audio, legacy `functions`, `custom` tools, uploaded `file_id`s) is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.dialects.translated import (
    Translated,
    check_choice,
    check_results,
    dropped,
    media_of,
    message,
    schema_of,
    tool_names,
    unsigned_call_id,
)
from gateway.errors import BadRequest
from gateway.parts import (
    ContentPart,
    Document,
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
from gateway.schemas import MAX_TEXT, ModelName, StopSequences

__all__ = ["OPENAI_ONLY", "ChatCompletionRequest", "ChatMessageIn", "ContentPart"]

TextField = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ContentPartIn(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=64)]
    text: TextField | None = None
    refusal: TextField | None = None
    image_url: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    arguments: TextField = ""


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # e.g. Google's `extra_content`

    id: Name
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    # Ignored, not refused: the SDKs hand back a response's message as the next request's
    # (the Node SDK's stream helpers add `parsed`; responses carry `annotations`, `audio`),
    # and OpenAI takes them.
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: TextField | list[ContentPartIn] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: Annotated[list[ToolCallIn], Field(max_length=1024)] | None = None
    tool_call_id: Name | None = None
    function_call: Any | None = None
    reasoning_content: TextField | None = None  # DeepSeek and vLLM clients send it back
    reasoning: TextField | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include_usage: bool = False
    include_obfuscation: bool | None = None


class FunctionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    description: TextField | None = None
    parameters: Any = None
    strict: bool | None = None


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=64)]
    function: FunctionIn | None = None


# OpenAI sampling hints passed on to OpenAI-compatible upstreams only (`reasoning_effort` is
# also mapped, as the reasoning control, for the others).
OPENAI_ONLY = (
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
    "user",
)

_SYSTEM_ROLES = ("system", "developer")


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=10_000)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: StopSequences | None = None
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    verbosity: str | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    tools: Annotated[list[ToolIn], Field(max_length=4096)] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # Hints: accepted and dropped (docs/DECISIONS.md).
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None  # it keys the sticky deployment (SPEC §5.3)
    safety_identifier: str | None = None
    # Accepted only in the forms that need nothing the gateway lacks.
    functions: list[Any] | None = None
    function_call: Any | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    modalities: list[str] | None = None

    def translated(self) -> Translated:
        """The request in the neutral form (a 400 naming what cannot be carried)."""
        self._check_supported()
        tools = tuple(_tool(index, tool) for index, tool in enumerate(self.tools or ()))
        choice = _choice(self.tool_choice)
        check_choice(choice, tool_names(tools, "tools"), "tool_choice")
        systems, messages = _messages(self.messages)
        effort = self.reasoning_effort
        reasoning = None
        if effort is not None:
            reasoning = ReasoningControl(enabled=effort != "none", effort=effort)
        openai_params = {k: getattr(self, k) for k in OPENAI_ONLY if getattr(self, k) is not None}
        return Translated(
            model=self.model,
            messages=messages,
            system="\n\n".join(systems) if systems else None,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop,
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=self.parallel_tool_calls,
            response_format=_format(self.response_format),
            reasoning=reasoning,
            openai_params=openai_params,
        )

    def _check_supported(self) -> None:
        if self.n not in (None, 1):
            raise BadRequest("n > 1 is not supported: the gateway relays one choice")
        if self.functions or self.function_call not in (None, "none"):
            raise BadRequest("functions / function_call (deprecated) are not supported: use tools")
        if self.logprobs or self.top_logprobs:
            raise BadRequest("logprobs are not supported")
        if self.modalities not in (None, ["text"]):
            raise BadRequest("modalities: only the text modality is supported")
        for name in ("metadata", "store", "service_tier", "safety_identifier"):
            if getattr(self, name) is not None:
                dropped(name, "a billing or storage hint")


def _tool(index: int, tool: ToolIn) -> ToolSpec:
    where = f"tools.{index}"
    if tool.type != "function" or tool.function is None:
        raise BadRequest(f"{where}.type: only function tools are supported, not {tool.type!r}")
    function = tool.function
    schema = schema_of(function.parameters, f"{where}.function.parameters")
    return ToolSpec(function.name, function.description, schema)


def _choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)  # type: ignore[arg-type]  # Literal-checked by pydantic
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        kind = str(choice.get("type"))[:64]
        raise BadRequest(f"tool_choice: {kind!r} is not supported (auto, none, required, function)")
    return ToolChoice("tool", name)


def _format(response_format: dict[str, Any] | None) -> JsonFormat | None:
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JsonFormat()
    if kind != "json_schema":
        raise BadRequest(f"response_format.type: {str(kind)[:64]!r} is not supported")
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema.schema: a JSON Schema object is required")
    name, strict = spec.get("name"), spec.get("strict")
    return JsonFormat(
        schema=schema,
        name=name if isinstance(name, str) else None,
        strict=strict if isinstance(strict, bool) else None,
    )


def _messages(messages: list[ChatMessageIn]) -> tuple[list[str], tuple[ChatMessage, ...]]:
    """The system texts in order, and the conversation: consecutive tool messages become one
    user message of results (the neutral form)."""
    systems: list[str] = []
    out: list[ChatMessage] = []
    results: list[ContentPart] = []
    for index, each in enumerate(messages):
        if each.role == "tool":
            results.append(_result(index, each))
            continue
        if results:
            out.append(ChatMessage("user", tuple(results)))
            results = []
        if each.role == "function":
            raise BadRequest(f"messages.{index}: function messages (deprecated) are not supported")
        if each.role in _SYSTEM_ROLES:
            systems.append(_text(index, each))
        elif each.role == "assistant":
            out.append(_assistant(index, each))
        else:
            out.append(message("user", _parts(index, each, assistant=False)))
    if results:
        out.append(ChatMessage("user", tuple(results)))
    return systems, check_results(out)


def _text(index: int, each: ChatMessageIn) -> str:
    parts = _parts(index, each, assistant=False)
    if not all(isinstance(part, Text) for part in parts):
        raise BadRequest(f"messages.{index}: a {each.role} message may hold text only")
    return "".join(part.text for part in parts if isinstance(part, Text))


def _assistant(index: int, each: ChatMessageIn) -> ChatMessage:
    if each.function_call is not None:
        raise BadRequest(f"messages.{index}.function_call (deprecated) is not supported")
    parts: list[ContentPart] = []
    thought = each.reasoning_content or each.reasoning
    if thought:
        parts.append(Reasoning(thought))
    parts += _parts(index, each, assistant=True)
    if each.refusal:
        parts.append(Text(each.refusal))
    for call in each.tool_calls or ():
        call_id, signature, origin = unsigned_call_id(call.id)
        if signature is not None:  # the signature the gateway gave the client in the id
            parts.append(Reasoning("", signature, origin))
        parts.append(ToolCall(call_id, call.function.name, call.function.arguments))
    return message("assistant", parts)


def _result(index: int, each: ChatMessageIn) -> ToolResult:
    if each.tool_call_id is None:
        raise BadRequest(f"messages.{index}.tool_call_id: a tool message needs the call's id")
    parts = _parts(index, each, assistant=False)
    if not all(isinstance(part, Text) for part in parts):
        raise BadRequest(f"messages.{index}: a tool message may hold text only")
    text = "".join(part.text for part in parts if isinstance(part, Text))
    return ToolResult(unsigned_call_id(each.tool_call_id)[0], text)


def _parts(index: int, each: ChatMessageIn, assistant: bool) -> list[ContentPart]:
    if each.content is None:
        return []
    if isinstance(each.content, str):
        return [Text(each.content)]
    where = f"messages.{index}.content"
    return [_part(f"{where}.{n}", part, assistant) for n, part in enumerate(each.content)]


def _part(where: str, part: ContentPartIn, assistant: bool) -> ContentPart:
    kind = part.type
    if kind == "text" or (assistant and kind == "refusal"):
        text = part.text if kind == "text" else part.refusal
        if text is None:
            raise BadRequest(f"{where}.{kind}: Field required")
        return Text(text)
    if kind == "image_url" and not assistant:
        url = (part.image_url or {}).get("url")
        if not isinstance(url, str):
            raise BadRequest(f"{where}.image_url.url: Field required")
        if "detail" in (part.image_url or {}):
            dropped("image_url.detail", "a resolution hint")
        return media_of(url, f"{where}.image_url.url")
    if kind == "file" and not assistant:
        return _file(where, part.file or {})
    raise BadRequest(f"{where}: {kind[:64]!r} content parts are not supported here")


def _file(where: str, file: dict[str, Any]) -> Document:
    data, name = file.get("file_data"), file.get("filename")
    if file.get("file_id") is not None:
        raise BadRequest(f"{where}.file.file_id: uploaded files are not supported: send file_data")
    if not isinstance(data, str):
        raise BadRequest(f"{where}.file.file_data: Field required")
    title = name if isinstance(name, str) else None
    if not data.startswith("data:"):  # bare base64, as some clients send a PDF
        data = "data:application/pdf;base64," + data
    media = media_of(data, f"{where}.file.file_data", title)
    if not isinstance(media, Document):
        return Document(media.media_type, media.data, title=title)
    return media
