"""The routes' side of the native path (gateway.native): which requests take it, which of
their attempts can serve them, and the responses that relay the upstream's bytes.

A request takes the native path when the entry its `model` names is on a provider that speaks
the client's dialect. Its fallbacks are tried in order as usual, but only those that can carry
it: another provider of that dialect, or one of another dialect when the request is plain text
that the translated path carries (docs/DECISIONS.md); the others are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict, StrictBool

from gateway.api._common import validate
from gateway.dialects.anthropic import MessagesEncoder
from gateway.dialects.openai import ChatCompletionEncoder
from gateway.errors import GatewayError
from gateway.models import Attempt
from gateway.native import Native, bytes_of
from gateway.providers.base import Batch, StreamOutcome
from gateway.relay import BuildRequest, StartStream
from gateway.responses import Encoder
from gateway.schemas import ModelName
from gateway.state import GatewayState

__all__ = [
    "NativeChatEncoder",
    "NativeFields",
    "NativeMessagesEncoder",
    "mixed",
    "native_fields",
    "native_plan",
    "start_for",
    "usable",
    "whole_response",
]

log = logging.getLogger("gateway.native")


class NativeFields(BaseModel):
    """The only fields of a native body the gateway reads itself (the rest goes up as is)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: ModelName
    stream: StrictBool = False


def native_plan(
    state: GatewayState, data: dict[str, Any], native: type[Native], conversation: str | None
) -> Sequence[Attempt] | None:
    """The attempt plan when the request takes the native path, else None (the translated
    path then validates the body and reports what is wrong with it, an unknown model too)."""
    model = data.get("model")
    if not isinstance(model, str):
        return None
    try:
        plan = state.models.resolve(model, conversation)  # sticky: SPEC §5.3
    except GatewayError:
        return None
    return plan if native.serves(plan[0]) else None


def native_fields(data: dict[str, Any]) -> NativeFields:
    return validate(NativeFields, data)


def mixed(plan: Sequence[Attempt], native: type[Native]) -> bool:
    """Whether some attempt of the plan is not on the native path (a fallback of another
    dialect, which needs the request translated)."""
    return not all(native.serves(each) for each in plan)


def usable(
    plan: Sequence[Attempt], native: type[Native], translatable: bool
) -> tuple[Attempt, ...]:
    """The attempts that can carry the request: native ones, and translated ones only for a
    request the translated path carries (plain text)."""
    kept = tuple(each for each in plan if translatable or native.serves(each))
    if len(kept) < len(plan):
        skipped = [each.model for each in plan if each not in kept]
        log.debug("fallbacks skipped (they cannot carry this request): %s", skipped)
    return kept


def start_for(native: Native, build: BuildRequest | None) -> StartStream:
    """Each attempt's stream: native where the upstream speaks the client's dialect, else
    the adapter's (`usable` kept such attempts only when `build` exists)."""

    def start(attempt: Attempt, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        if native.serves(attempt):
            return native.start(attempt, outcome)
        assert build is not None
        return attempt.provider.adapter.stream(build(attempt), outcome)

    return start


class _Relayed(Encoder):
    """The upstream's events as they came: no frames of the gateway's own, except its in-band
    error and keep-alive (inherited from the dialect's encoder). `deltas` counts events."""

    def opening(self) -> bytes:
        return b""

    def frames(self, batch: Batch) -> bytes:
        self.deltas += len(batch)
        return bytes_of(batch)  # type: ignore[arg-type]  # native batches are raw events (str)

    def closing(self) -> list[bytes]:
        return []


class NativeMessagesEncoder(_Relayed, MessagesEncoder):
    pass


class NativeChatEncoder(_Relayed, ChatCompletionEncoder):
    pass


def whole_response(text: str, headers: dict[str, str]) -> Response:
    """A non-streamed native answer: the upstream's JSON body, byte for byte."""
    return Response(bytes_of([text]), media_type="application/json", headers=headers)
