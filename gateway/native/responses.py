"""OpenAI's Responses API on the native path (SPEC §4.9, §4.10): a `/v1/responses` client on an
`openai` provider with `api = "responses"`.

The body goes up as sent (hosted tools, `previous_response_id`, fields nobody knows yet) with
the entry's model and params and the provider's credentials. The upstream's events come back
byte for byte; only these are read: `response.created` (the id, whose owner the gateway
records), the terminal `response.completed` / `response.incomplete` (usage and why it ended;
the end of the stream: Responses streams have no `[DONE]`), and the failures,
`response.failed` and `event: error`, which the gateway's own `response.failed` replaces,
numbered after the last event relayed. Every other event, the deltas above all, is relayed
after a look at its `event:` line only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from gateway.errors import UpstreamProtocolError
from gateway.models import Attempt
from gateway.native import Native, RequestFor
from gateway.native.sse import fields
from gateway.providers._http import UpstreamClient, in_stream_error, parse_event
from gateway.providers._shapes import obj, object_at, text
from gateway.providers.base import Batch, StreamOutcome
from gateway.providers.openai import OpenAIProvider
from gateway.providers.openai_responses import read_end

__all__ = ["Remember", "ResponsesNative", "next_sequence_number"]

# Called with a response id the upstream made, and the provider that made it.
Remember = Callable[[str, str], None]

# The events read; every other one is relayed unread.
_READ = frozenset(
    {"response.created", "response.completed", "response.incomplete", "response.failed", "error"}
)
_SEQUENCE = re.compile(r'"sequence_number"\s*:\s*(\d+)')


class ResponsesNative(Native):
    provider = OpenAIProvider

    def __init__(self, data: dict[str, Any], stream: bool, remember: Remember | None) -> None:
        super().__init__(data, stream)
        self.remember = remember  # None: `store: false`, nothing to continue or read later
        self.response_id: str | None = None
        self.last_event = ""  # the last event relayed: the gateway's own is numbered after it
        self._provider = ""

    @classmethod
    def serves(cls, attempt: Attempt) -> bool:
        adapter = attempt.provider.adapter
        return isinstance(adapter, OpenAIProvider) and adapter.config.api == "responses"

    def start(self, attempt: Attempt, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        # A fallback starts afresh: nothing of an attempt that failed reached the client.
        self.response_id, self.last_event = None, ""
        self._provider = attempt.provider.name
        return super().start(attempt, outcome)

    def body(self, attempt: Attempt) -> dict[str, Any]:
        params = dict(attempt.params)
        # The entry's generic names in Responses' words (Responses has no stop sequences).
        if "system" in params:
            params.setdefault("instructions", params.pop("system"))
        if "max_tokens" in params:
            params.setdefault("max_output_tokens", params.pop("max_tokens"))
        params.pop("stop", None)
        body = dict(self.data)
        for key, value in params.items():
            body.setdefault(key, value)
        body["model"] = attempt.upstream_model
        if self.stream:
            body["stream"] = True
        return body

    def upstream(self, attempt: Attempt) -> tuple[UpstreamClient, int, RequestFor]:
        adapter = attempt.provider.adapter
        assert isinstance(adapter, OpenAIProvider)
        body = self.body(attempt)
        request_for = partial(adapter.native_request, body, stream=self.stream, responses=True)
        return adapter.client, adapter.config.max_event_bytes, request_for

    def on_event(self, event: str, outcome: StreamOutcome, batch: Batch) -> bool:
        if event.startswith("event: "):
            end = event.find("\n")
            name = event[7:end].rstrip("\r")
            if name not in _READ:  # the hot case: a delta, relayed unread
                batch.append(event)
                self.last_event = event
                return False
            data = fields(event)[1]
        else:  # no `event:` line (a comment, or a server that puts the type in the data only)
            name, data = _typed(event)
            if name not in _READ:
                batch.append(event)
                if data:
                    self.last_event = event
                return False
        return self._read(name, object_at(parse_event(data), "an event"), outcome, event, batch)

    def _read(
        self, name: str, data: dict[str, Any], outcome: StreamOutcome, event: str, batch: Batch
    ) -> bool:
        if name == "error":
            raise in_stream_error(data, data.get("code"))
        response = obj(data, "response")
        if name == "response.failed":
            error = obj(response, "error")
            raise in_stream_error({"error": error}, error.get("code"))
        batch.append(event)
        self.last_event = event
        if name == "response.created":
            self._created(response)
            return False
        self._created(response)  # a stream without response.created still names its response
        _read_end(response, outcome)
        return True

    def _created(self, response: dict[str, Any]) -> None:
        response_id = text(response, "id")
        if response_id and response_id != self.response_id:
            self.response_id = response_id
            if self.remember is not None:
                self.remember(response_id, self._provider)

    def unfinished(self, outcome: StreamOutcome) -> UpstreamProtocolError:
        return UpstreamProtocolError("the upstream stream ended before response.completed")

    def read_whole(self, data: Any, outcome: StreamOutcome) -> None:
        response = object_at(data, "a response")
        self._created(response)
        _read_end(response, outcome)


def _typed(event: str) -> tuple[str, bytes]:
    """An event without an `event:` line: its type from the data, if the data is an object."""
    data = fields(event)[1]
    if data[:1] != b"{":
        return "", data
    found = parse_event(data)
    kind = found.get("type") if isinstance(found, dict) else None
    return (kind if isinstance(kind, str) else ""), data


def _read_end(response: dict[str, Any], outcome: StreamOutcome) -> None:
    """A relayed answer's end: its output lists the calls it made."""
    output = response.get("output")
    calls = isinstance(output, list) and any(
        isinstance(item, dict) and str(item.get("type", "")).endswith("call") for item in output
    )
    read_end(response, outcome, calls)


def next_sequence_number(last_event: str) -> int:
    """The number after the last event's `sequence_number` (0 when nothing was relayed)."""
    found = _SEQUENCE.search(last_event)
    return int(found.group(1)) + 1 if found else 0
