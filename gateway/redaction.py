"""What a secret looks like, shared by log redaction and upstream-message sanitising."""

from __future__ import annotations

import re

__all__ = ["KEY_PREFIXES", "KEY_SHAPED"]

# Provider keys by their usual prefixes (OpenAI/Anthropic sk-…, Google AIza…, Groq gsk_…,
# xAI xai-…): upstreams echo them back ("Incorrect API key provided: sk-…").
# Cloud credentials too: AWS access key ids (AKIA… long-term, ASIA… temporary), Google OAuth2
# access tokens (ya29.…) and JWTs (eyJ…, Entra ID tokens and signed assertions).
KEY_SHAPED = re.compile(
    r"\b(?:(?:sk|pk|rk|AIza|gsk|xai)[-_A-Za-z0-9*.]{8,}"
    r"|A(?:KIA|SIA)[A-Z0-9]{16}|ya29\.[-_A-Za-z0-9.]+|eyJ[-_A-Za-z0-9.]{16,})"
)
# What every match of KEY_SHAPED contains ("gsk" holds "sk"): text with none of them needs no
# scan (tests/unit/test_redaction.py holds the redactor to the patterns without this).
KEY_PREFIXES = ("sk", "pk", "rk", "AIza", "xai", "AKIA", "ASIA", "ya29.", "eyJ")
