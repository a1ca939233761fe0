"""The log redactor's shortcuts: a pattern is skipped only on text it could not match, so the
redactor's output equals running every pattern on every line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import observability
from gateway.observability import Redactor
from gateway.redaction import KEY_SHAPED

SECRET = "my-own-secret-value"

# Text made of the pieces the patterns look for, in any case and order, with separators.
PIECES = [
    "authorization",
    "Proxy-Authorization",
    "x-api-key",
    "X-Goog-Api-Key",
    "apikey",
    "API_KEY",
    "api-Key",
    "bearer ",
    "Basic ",
    ": ",
    "=",
    '"',
    "'",
    "?",
    "&",
    "key",
    "token",
    "secret",
    "access_token",
    "sk-",
    "sk_",
    "gsk_",
    "pk-",
    "rk-",
    "AIza",
    "xai-",
    "AKIA",
    "ASIA",
    "ya29.",
    "eyJ",
    "ABCDEFGHIJKLMNOP",
    "0123456789",
    "abc.def-ghi_jkl",
    " ",
    "\n",
    "/v1",
    SECRET,
    "é",
]


def every_pattern(text: str) -> str:
    """The redactor without its shortcuts."""
    text = text.replace(SECRET, "[redacted]")
    text = observability._REDACTIONS[0].sub(r"\1\2[redacted]", text)
    text = observability._REDACTIONS[1].sub(r"\1[redacted]", text)
    return KEY_SHAPED.sub("[redacted]", text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=24))
def test_redactor_equals_every_pattern_on_every_line(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert Redactor([SECRET])(text) == every_pattern(text)


# One match of every alternative of every pattern, in the case that defeats a case-sensitive
# shortcut.
MATCHES = [
    "sk-ABCDEFGH12",
    "pk_ABCDEFGH12",
    "rk-ABCDEFGH12",
    "AIzaABCDEFGH12",
    "gsk_ABCDEFGH12",
    "xai-ABCDEFGH12",
    "AKIA" + "A" * 16,
    "ASIA" + "B" * 16,
    "ya29.abc",
    "eyJ" + "a" * 16,
    "Authorization: Bearer x",
    "PROXY-AUTHORIZATION: x",
    "X-API-KEY=x",
    "x-goog-api-key: x",
    "APIKEY=x",
    "Api-Key=x",
    "API_KEY=x",
    "/v1?key=x",
    "/v1&api_key=x",
    "/v1?ApiKey=x",
    "/v1&TOKEN=x",
    "/v1?access_token=x",
    "/v1&secret=x",
]


@pytest.mark.parametrize("match", MATCHES)
def test_every_alternative_of_every_pattern_is_redacted(match: str) -> None:
    line = f"INFO gateway.access: request route=/v1/x {match} status=200"
    redacted = Redactor([SECRET])(line)
    assert redacted == every_pattern(line)
    assert "[redacted]" in redacted


def test_an_access_line_is_left_as_it_is_and_a_key_in_it_is_not() -> None:
    line = "INFO gateway.access: request route=/v1/chat/completions status=200 deltas=66"
    redact = Redactor([SECRET])
    assert redact(line) == line
    assert redact(line + " model=sk-proj-ABCDEF123456") == line + " model=[redacted]"
    assert redact(line + " x?token=abc") == line + " x?token=[redacted]"
    assert redact(line + " Authorization: Bearer abc") == line + " Authorization: [redacted]"
