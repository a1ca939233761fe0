"""Sticky conversations (SPEC §5.3): the turns of one conversation on one deployment.

Prompt caches live in one deployment (one account, one region): an agent resends its whole
history every turn, and a turn that lands where the previous one ran reads that prefix from the
cache (a tenth of the input price, and a faster first token) instead of paying it again. The
conversation is named by what the client already sends; the deployment is chosen by rendezvous
hashing of that name over the healthy deployments, so every replica picks the same one with no
shared state, a cooling deployment's conversations move to their next choice (and only they
move), and they come back when it recovers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from starlette.datastructures import Headers

__all__ = ["conversation_of", "rendezvous", "rendezvous_order"]

T = TypeVar("T")

# Headers naming a conversation: the gateway's own, then Codex's (it sends `session_id`;
# `session-id` is the same name as proxies that drop underscores pass it).
_EXPLICIT = "x-session-id"
_CODEX = ("session-id", "session_id")


def conversation_of(headers: Headers, from_body: str | None = None) -> str | None:
    """The conversation a request belongs to: `X-Session-ID`, else what the dialect's body
    names (`metadata.user_id`, `prompt_cache_key`, `user`, the UI chat `id`), else Codex's
    session header; None when the client names none (the routing strategy decides alone)."""
    found = headers.get(_EXPLICIT) or from_body
    if found:
        return found
    for name in _CODEX:
        if found := headers.get(name):
            return found
    return None


def rendezvous_order(
    conversation: str,
    candidates: Sequence[T],
    name: Callable[[T], str],
    weight: Callable[[T], float],
) -> list[T]:
    """The candidates by their weighted rendezvous score for `conversation`, highest first:
    the first is where the conversation goes, the next where it goes when that one fails
    (so that a failover turn lands where the following turns will).

    The hash is BLAKE2 (Python's `hash` differs per process); the score, -weight / ln(u) for
    u uniform in (0, 1), gives each candidate its weight's share of conversations; a weight
    of 0 ranks last.
    """
    prefix = conversation.encode("utf-8", "surrogatepass") + b"\0"

    def score(candidate: T) -> float:
        digest = hashlib.blake2b(prefix + name(candidate).encode(), digest_size=8).digest()
        uniform = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
        return -weight(candidate) / math.log(uniform)

    return sorted(candidates, key=score, reverse=True)


def rendezvous(
    conversation: str,
    candidates: Sequence[T],
    name: Callable[[T], str],
    weight: Callable[[T], float],
) -> T:
    """Where `conversation` goes among `candidates` (the first of `rendezvous_order`)."""
    return rendezvous_order(conversation, candidates, name, weight)[0]
