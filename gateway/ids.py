"""Random ids from the operating system's CSPRNG, read in batches.

Every request takes a request id, a lease id and a stream id; `secrets` asks the kernel once
for each (a `getrandom` system call, ~2 us). The same bytes come from one read of 4 KiB per
~100 requests. A forked child starts a batch of its own (it must never repeat its parent's).
"""

from __future__ import annotations

import base64
import os

__all__ = ["token_hex", "token_urlsafe"]

_BATCH = 4096


class _RandomBytes:
    __slots__ = ("_at", "_bytes")

    def __init__(self) -> None:
        self.refill()

    def refill(self) -> None:
        self._bytes = os.urandom(_BATCH)
        self._at = 0

    def take(self, count: int) -> bytes:
        if self._at + count > _BATCH:
            self.refill()
        at = self._at
        self._at = at + count
        return self._bytes[at : at + count]


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.refill)


def token_hex(count: int) -> str:
    """`count` random bytes as hex, like `secrets.token_hex`."""
    return _random.take(count).hex()


def token_urlsafe(count: int) -> str:
    """`count` random bytes in URL-safe base64, unpadded, like `secrets.token_urlsafe`."""
    return base64.urlsafe_b64encode(_random.take(count)).rstrip(b"=").decode("ascii")
