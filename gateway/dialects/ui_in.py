"""`useChat`'s messages on the translated path (SPEC §4.6, §4.9).

A UI message is a list of parts. System messages' text joins the system prompt; a user
message's `text` and `file` parts (data URLs, or https URLs the upstream fetches) become its
content. An assistant message is split into steps at each `step-start` (as the AI SDK's own
`convertToModelMessages` does): each step is an assistant message (its `reasoning`, `text`
and tool calls, in order) followed, when its tools have run, by a user message of their
results. A tool part (`tool-<name>`, or `dynamic-tool` with `toolName`) in state
`input-available` is a call; in `output-available` / `output-error` a call and its result (an
error's text, `is_error`). A reasoning part brings back the signature the gateway gave it
(`providerMetadata.gateway`, written by `UIParts`), for the upstream that made it.

`source-*` and `data-*` parts (citations and the app's own data) are not content and are
dropped; any other part type, and a tool call still streaming its input, is a 422 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.dialects.translated import check_results, dropped, json_text, media_of, message
from gateway.errors import InvalidRequest
from gateway.parts import (
    ContentPart,
    Document,
    Image,
    Reasoning,
    Text,
    ToolCall,
    ToolResult,
)
from gateway.providers.base import ChatMessage
from gateway.schemas import MAX_TEXT

__all__ = ["UIMessage", "UIPart", "ui_messages"]

TextField = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class UIPart(BaseModel):
    """One part of a UI message. Parts carry type-specific fields (`state`, `providerMetadata`
    …), so unknown fields are allowed here; the type decides what the part becomes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, StringConstraints(max_length=256)]
    text: TextField | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(max_length=256)] | None = None
    role: Literal["system", "user", "assistant"]
    metadata: Any = None
    parts: Annotated[list[UIPart], Field(max_length=10_000)]


def ui_messages(messages: list[UIMessage], systems: list[str]) -> tuple[ChatMessage, ...]:
    """The conversation in the neutral form; system texts are appended to `systems`."""
    out: list[ChatMessage] = []
    for index, each in enumerate(messages):
        if each.role == "assistant":
            out += _assistant(index, each)
            continue
        parts = [
            part
            for number, ui in enumerate(each.parts)
            if (part := _user_part(f"messages.{index}.parts.{number}", ui)) is not None
        ]
        if not parts:
            continue  # nothing said (an empty message, only markers)
        if each.role == "system":
            if not all(isinstance(part, Text) for part in parts):
                raise InvalidRequest(f"messages.{index}: a system message holds text only")
            systems.append("".join(part.text for part in parts if isinstance(part, Text)))
        else:
            out.append(message("user", parts))
    if not out:
        raise InvalidRequest("messages: no message has content")
    return check_results(out)


def _skipped(where: str, part: UIPart) -> bool:
    """Parts that carry no content: step markers, citations, the app's own data."""
    if part.type == "step-start":
        return True
    if part.type.startswith(("source-", "data-")):
        dropped(where, "not content")
        return True
    return False


def _text(where: str, part: UIPart) -> Text:
    if part.text is None:
        raise InvalidRequest(f"{where}.text: Field required")
    return Text(part.text)


def _user_part(where: str, part: UIPart) -> ContentPart | None:
    if _skipped(where, part):
        return None
    if part.type == "text":
        return _text(where, part)
    if part.type == "file":
        return _file(where, part.model_extra or {})
    raise InvalidRequest(f"{where}: parts of type {part.type[:64]!r} are not supported here")


def _file(where: str, fields: dict[str, Any]) -> Image | Document:
    url, media_type, name = fields.get("url"), fields.get("mediaType"), fields.get("filename")
    if not isinstance(url, str) or not isinstance(media_type, str):
        raise InvalidRequest(f"{where}: a file part needs `url` and `mediaType`")
    title = name if isinstance(name, str) else None
    media = media_of(url, f"{where}.url", title)
    if media.url is None:
        return media  # inline: its own data URL says what it is
    if media_type.startswith("image/"):
        return Image(media_type=media_type, url=media.url)
    return Document(media_type=media_type, url=media.url, title=title)


def _assistant(index: int, each: UIMessage) -> list[ChatMessage]:
    """The message's steps: each an assistant message, then its tools' results."""
    out: list[ChatMessage] = []
    said: list[ContentPart] = []
    results: list[ContentPart] = []

    def end_step() -> None:
        nonlocal said, results
        if said:
            out.append(message("assistant", said))
        if results:
            out.append(ChatMessage("user", tuple(results)))
        said, results = [], []

    for number, part in enumerate(each.parts):
        where = f"messages.{index}.parts.{number}"
        if part.type == "step-start":
            end_step()
        elif _skipped(where, part):
            continue
        elif part.type == "text":
            text = _text(where, part)
            if text.text:  # an empty one says nothing (and some upstreams refuse it)
                said.append(text)
        elif part.type == "reasoning":
            said.append(_reasoning(where, part))
        elif part.type.startswith("tool-") or part.type == "dynamic-tool":
            call, result = _tool(where, part)
            said.append(call)
            if result is not None:
                results.append(result)
        else:
            raise InvalidRequest(f"{where}: parts of type {part.type[:64]!r} are not supported")
    end_step()
    return out


def _reasoning(where: str, part: UIPart) -> Reasoning:
    text = _text(where, part).text
    metadata = (part.model_extra or {}).get("providerMetadata")
    ours = metadata.get("gateway") if isinstance(metadata, dict) else None
    if not isinstance(ours, dict) or not isinstance(ours.get("signature"), str):
        return Reasoning(text)
    origin = ours.get("origin")
    return Reasoning(
        text,
        signature=ours["signature"],
        origin=origin if isinstance(origin, str) else None,
        redacted=ours.get("redacted") is True,
    )


_STATES = ("input-available", "output-available", "output-error")


def _tool(where: str, part: UIPart) -> tuple[ToolCall, ToolResult | None]:
    fields = part.model_extra or {}
    name = fields.get("toolName") if part.type == "dynamic-tool" else part.type[len("tool-") :]
    call_id, state = fields.get("toolCallId"), fields.get("state")
    if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{where}: a tool part needs `toolCallId` and the tool's name")
    if state not in _STATES:
        raise InvalidRequest(
            f"{where}.state: {str(state)[:64]!r} cannot be sent (the call's input must be "
            "complete: input-available, output-available or output-error)"
        )
    if len(call_id) > 256 or len(name) > 256:
        raise InvalidRequest(f"{where}: a tool's name and call id are at most 256 characters")
    call = ToolCall(call_id, name, json_text(fields.get("input", {}), f"{where}.input"))
    if state == "input-available":
        return call, None
    if state == "output-error":
        error = fields.get("errorText")
        return call, ToolResult(call.id, error if isinstance(error, str) else "", is_error=True)
    output = fields.get("output")
    text = output if isinstance(output, str) else json_text(output, f"{where}.output")
    return call, ToolResult(call.id, text)
