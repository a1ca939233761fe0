"""Ways a network can cut a byte stream: every 2-way offset, byte by byte, random cuts."""

from __future__ import annotations

import random
from collections.abc import Iterator


def every_split(body: bytes) -> Iterator[list[bytes]]:
    yield [body]
    for cut in range(1, len(body)):
        yield [body[:cut], body[cut:]]
    yield [body[i : i + 1] for i in range(len(body))]
    rng = random.Random(len(body))  # deterministic per body
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(2, 6)))
        yield [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def multibyte_splits(body: bytes) -> Iterator[list[bytes]]:
    """Cuts inside every multi-byte UTF-8 character of `body`."""
    for index, byte in enumerate(body):
        if byte >= 0x80 and (byte & 0xC0) == 0x80:  # a continuation byte: cut just before it
            yield [body[:index], body[index:]]


def framing_splits(body: bytes) -> Iterator[list[bytes]]:
    """The cuts that matter to a framing decoder, for bodies too long for `every_split` to be
    cheap: whole, byte by byte (a cut at every offset, in one pass), a 2-way cut at every
    offset within 3 bytes of each line break (where events and fields end), and random
    multi-way cuts."""
    yield [body]
    yield [body[i : i + 1] for i in range(len(body))]
    near = {
        cut
        for index, byte in enumerate(body)
        if byte == 0x0A
        for cut in range(index - 3, index + 4)
        if 0 < cut < len(body)
    }
    for cut in sorted(near):
        yield [body[:cut], body[cut:]]
    rng = random.Random(len(body))
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(2, 6)))
        yield [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
