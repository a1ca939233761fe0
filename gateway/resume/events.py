"""Numbered events: what a generation's log holds, independent of any wire framing.

An event is `(seq, payload)`: `seq` counts from 0 without gaps, and the payload is a text
delta (`str`), a part beyond text (`gateway.parts`), the generation's clean `End`, or its
`Failure`. The last event of every log is
exactly one `End` or `Failure`. Dialects frame events for the wire (the `/stream` SSE framing
is `gateway.api.resume`); replayed and live events are the same objects, so the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.parts import STREAM_PARTS, StreamPart, part_data, part_of

__all__ = ["PART", "End", "Event", "Failure", "Payload", "decode", "encode", "is_terminal"]


@dataclass(frozen=True, slots=True)
class End:
    finish_reason: str | None
    usage: dict[str, int | None] | None
    model: str
    provider: str

    def summary(self) -> dict[str, Any]:
        return {
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "model": self.model,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class Failure:
    type: str
    message: str


Payload = str | StreamPart | End | Failure
Event = tuple[int, Payload]


def is_terminal(payload: Payload) -> bool:
    return isinstance(payload, End | Failure)


# As a Redis Stream entry: one field, named by the kind of payload.
DELTA, PART, END, FAILURE = b"d", b"p", b"e", b"x"


def encode(payload: Payload) -> tuple[bytes, bytes]:
    if isinstance(payload, str):
        return DELTA, payload.encode()
    if isinstance(payload, STREAM_PARTS):
        return PART, orjson.dumps(part_data(payload))
    if isinstance(payload, End):
        return END, orjson.dumps(payload.summary())
    return FAILURE, orjson.dumps({"type": payload.type, "message": payload.message})


def decode(fields: dict[bytes, bytes]) -> Payload:
    if (text := fields.get(DELTA)) is not None:
        return text.decode()
    if (part := fields.get(PART)) is not None:
        return part_of(orjson.loads(part))
    if (end := fields.get(END)) is not None:
        data = orjson.loads(end)
        return End(data["finish_reason"], data["usage"], data["model"], data["provider"])
    data = orjson.loads(fields[FAILURE])
    return Failure(data["type"], data["message"])
