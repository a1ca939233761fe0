"""Ids drawn from batches of the OS's random bytes: the formats `secrets` gives, never the
same bytes twice, across batch boundaries."""

from __future__ import annotations

import re

from gateway import ids


def test_ids_have_the_formats_of_secrets_and_never_repeat() -> None:
    drawn = [ids.token_hex(16) for _ in range(1000)]  # ~4 batches of 4 KiB
    assert all(re.fullmatch(r"[0-9a-f]{32}", each) for each in drawn)
    urlsafe = [ids.token_urlsafe(16) for _ in range(1000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", each) for each in urlsafe)
    assert len(set(drawn)) == len(drawn) and len(set(urlsafe)) == len(urlsafe)


def test_a_batch_is_used_once_then_replaced() -> None:
    pool = ids._RandomBytes()
    first = pool._bytes
    taken = b"".join(pool.take(7) for _ in range(ids._BATCH // 7))
    assert taken == first[: len(taken)]  # in order, nothing skipped or repeated
    assert pool.take(7) == pool._bytes[:7] and pool._bytes != first  # a fresh batch
