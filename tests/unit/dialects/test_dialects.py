"""What every client dialect shares: the neutral finish reasons, the native envelope, and
OpenAI's finish words (its own pass through, every other provider's are mapped)."""

from __future__ import annotations

import pytest

from gateway.dialects import NATIVE, Finish, finish_of
from gateway.dialects.openai import OPENAI, openai_finish_reason
from gateway.errors import RateLimited, UnknownModel


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        (None, Finish.END),
        ("stop", Finish.END),
        ("end_turn", Finish.END),
        ("STOP", Finish.END),
        ("stop_sequence", Finish.STOP_SEQUENCE),
        ("length", Finish.LENGTH),
        ("MAX_TOKENS", Finish.LENGTH),
        ("tool_use", Finish.TOOL_CALL),
        ("SAFETY", Finish.FILTERED),
        ("blocked:OTHER", Finish.FILTERED),
        ("unheard_of", Finish.END),
    ],
)
def test_finish_of_every_provider(reason: str | None, finish: Finish) -> None:
    assert finish_of(reason) is finish


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (None, "stop"),
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("STOP", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("MAX_TOKENS", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_calls", "tool_calls"),
        ("tool_use", "tool_calls"),
        ("function_call", "function_call"),
        ("content_filter", "content_filter"),
        ("refusal", "content_filter"),
        ("RECITATION", "content_filter"),
        ("blocked:SAFETY", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_openai_finish_reasons(reason: str | None, expected: str) -> None:
    assert openai_finish_reason(reason) == expected


def test_native_and_openai_envelopes() -> None:
    native = NATIVE.error_reply(UnknownModel("no such", model="m"), "rid")
    assert (native.status, native.body) == (
        404,
        {"error": {"type": "unknown_model", "message": "no such", "request_id": "rid"}},
    )
    openai = OPENAI.error_reply(RateLimited("slow down", retry_after=3), "rid")
    assert openai.status == 429
    assert openai.body == {
        "error": {
            "message": "slow down",
            "type": "rate_limited",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert openai.headers == {"Retry-After": "3"}
