"""Client dialects: the API shapes the gateway speaks *to clients*.

Provider dialects (spoken to upstreams) live in `gateway.providers`; these are the other side.
Each client dialect is one module holding everything about its shape:

    openai.py     POST /v1/chat/completions (SPEC §4.3)
    anthropic.py  POST /v1/messages (SPEC §4.7)

- request parsing into the normalised request (a `BuildRequest` for the relay),
- an `Encoder` that frames the relay's deltas (`gateway.responses`), and the whole body for
  non-streaming answers (collected by `gateway.api._serve.collect`, shared by every dialect),
- its finish-reason words, mapped from the provider-neutral `Finish` below,
- its error envelope: a `Dialect`, and a route class that marks a matched request with it.

Routes pick their dialect explicitly: a router built with `route_class=OpenAIRoute` answers
every error in OpenAI's shape, authentication and limits included, because the route class
marks the request as soon as its path matches (before any dependency runs, and for a 405 too).
The gateway's own shape (`/stream`) is `NATIVE`. Adding a dialect adds one module here and one
router in `gateway.api`; the relay and the adapters do not change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.routing import Match
from starlette.types import Scope

from gateway.errors import GatewayError
from gateway.routing import DirectRoute

__all__ = [
    "DIALECT_KEY",
    "NATIVE",
    "Dialect",
    "DialectRoute",
    "ErrorReply",
    "Finish",
    "dialect_of",
    "finish_of",
]

DIALECT_KEY = "gateway.dialect"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Dialect:
    """How a dialect answers an error before the commit point: status, envelope, headers.

    This base class is the gateway's own envelope (SPEC §4.2).
    """

    def error_reply(self, error: GatewayError, request_id: str) -> ErrorReply:
        body = {"error": {"type": error.type, "message": error.message, "request_id": request_id}}
        return ErrorReply(error.status, body, error.headers())


NATIVE = Dialect()


class DialectRoute(DirectRoute):
    """A route that marks the request's scope with its dialect as soon as the path matches."""

    dialect: ClassVar[Dialect] = NATIVE

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope[DIALECT_KEY] = self.dialect
        return match, child_scope


def dialect_of(scope: Scope) -> Dialect | None:
    """The dialect of the route that matched the request, if one did."""
    dialect: Dialect | None = scope.get(DIALECT_KEY)
    return dialect


class Finish(enum.Enum):
    """Why a generation ended, in no provider's words: each dialect maps these to its own."""

    END = "end"
    STOP_SEQUENCE = "stop_sequence"
    LENGTH = "length"
    TOOL_CALL = "tool_call"
    FILTERED = "filtered"


# Every provider's finish reason (`StreamOutcome.finish_reason` keeps the provider's own word).
_PROVIDER_REASONS = {
    "stop": Finish.END,  # OpenAI, Ollama, the fake provider
    "end_turn": Finish.END,  # Anthropic
    "pause_turn": Finish.END,
    "STOP": Finish.END,  # Gemini
    "stop_sequence": Finish.STOP_SEQUENCE,
    "length": Finish.LENGTH,
    "max_tokens": Finish.LENGTH,
    "MAX_TOKENS": Finish.LENGTH,
    "model_context_window_exceeded": Finish.LENGTH,
    "tool_calls": Finish.TOOL_CALL,
    "tool_use": Finish.TOOL_CALL,
    "function_call": Finish.TOOL_CALL,
    "content_filter": Finish.FILTERED,
    "refusal": Finish.FILTERED,
    "SAFETY": Finish.FILTERED,
    "RECITATION": Finish.FILTERED,
    "BLOCKLIST": Finish.FILTERED,
    "PROHIBITED_CONTENT": Finish.FILTERED,
    "SPII": Finish.FILTERED,
}


def finish_of(reason: str | None) -> Finish:
    """A provider's finish reason in the gateway's neutral terms (unknown ones: END)."""
    if reason is None:
        return Finish.END
    if reason.startswith("blocked:"):  # a Gemini prompt block
        return Finish.FILTERED
    return _PROVIDER_REASONS.get(reason, Finish.END)
