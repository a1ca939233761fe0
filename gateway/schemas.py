"""What clients send to /stream, validated strictly (unknown fields are rejected)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["MAX_TEXT", "Message", "ModelName", "StopSequences", "StreamRequest"]

MAX_TEXT = 1_000_000  # characters; the body limit (max_body_bytes) usually bites first

StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=256)]
StopSequences = StopSequence | Annotated[list[StopSequence], Field(min_length=1, max_length=16)]


# Printable ASCII, no spaces: names travel back in the X-Gateway-Model header.
ModelName = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,256}$")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class StreamRequest(BaseModel):
    """POST /stream body, or GET /stream query parameters (SPEC §4.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName | None = None
    prompt: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    messages: Annotated[list[Message], Field(min_length=1, max_length=10_000)] | None = None
    system: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: StopSequences | None = None
    resumable: bool = False  # SPEC §4.5 (sse only)

    @model_validator(mode="after")
    def _prompt_xor_messages(self) -> StreamRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of `prompt` and `messages`")
        return self
