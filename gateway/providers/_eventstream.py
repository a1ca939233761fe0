"""AWS `application/vnd.amazon.eventstream` frames, decoded incrementally (Bedrock).

botocore's `EventStreamBuffer` does the framing: it takes bytes cut anywhere, checks the
prelude's and the message's CRC32, bounds header and payload sizes, and parses the typed
headers. What this module adds: any decoding failure (a bad CRC, an impossible length, broken
headers) becomes `UpstreamProtocolError`, and the bytes waiting for a message to complete are
bounded by `max_event_bytes`, as for SSE.

Each message comes out as `Frame(kind, name, payload)`: `kind` is `:message-type` (`event`,
`exception` or `error`), `name` the `:event-type`, `:exception-type` or `:error-code`.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import UpstreamProtocolError
from gateway.providers._sse import event_too_large

__all__ = ["EventStreamDecoder", "Frame"]


class Frame(NamedTuple):
    kind: str
    name: str
    payload: bytes


def _name(kind: str, headers: dict[str, object]) -> str:
    key = {"event": ":event-type", "exception": ":exception-type"}.get(kind, ":error-code")
    value = headers.get(key)
    return value if isinstance(value, str) else ""


class EventStreamDecoder:
    __slots__ = ("_buffer", "_limit", "_pending")

    def __init__(self, max_event_bytes: int) -> None:
        # Imported here: botocore is ~20 MiB, and only a Bedrock stream needs it.
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()
        self._limit = max_event_bytes
        self._pending = 0  # bytes fed and not yet part of a message handed out

    def feed(self, chunk: bytes) -> list[Frame]:
        """The messages this read completes, in order."""
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        frames: list[Frame] = []
        try:
            for message in self._buffer:
                prelude = message.prelude
                if prelude.headers_end > prelude.payload_end:  # lengths that overlap
                    raise ValueError("headers longer than the message")
                self._pending -= prelude.total_length
                headers = message.headers
                kind = headers.get(":message-type")
                kind = kind if isinstance(kind, str) else "event"
                frames.append(Frame(kind, _name(kind, headers), message.payload))
        except Exception as exc:  # botocore's ParserError, or worse on hostile bytes
            raise UpstreamProtocolError(
                f"the upstream sent a broken event-stream message ({type(exc).__name__})"
            ) from None
        if self._pending > self._limit:
            raise event_too_large(self._limit)
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (a stream that ends with some was truncated)."""
        return self._pending
