"""The native path (SPEC §4.9, "Same dialect: native"): a client that speaks its upstream's
dialect (an Anthropic client on an `anthropic` provider, an OpenAI client on an `openai` one).

The request goes upstream as the client sent it, every field included (tools, thinking,
cache control, fields nobody has heard of yet), with only `model` (the entry's upstream model),
the entry's `params` (merged under the client's fields), what streaming needs and the
credentials changed. The upstream's events reach the client as the bytes it sent
(`gateway.native.sse`); they are read only to account (usage, stop reason), to find the end and
errors, and they commit the stream with the first event. Content events, the hot case, are
recognised by their first bytes and never parsed.

Everything around the stream is the translated path's: the relay's attempts, fallbacks,
retries and time-outs (`gateway.relay`), and the response's lifecycle, limits and accounting
(`gateway.responses`); a `Native` is only the `StartStream` of the attempts it serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import httpx

from gateway.errors import UpstreamProtocolError
from gateway.models import Attempt
from gateway.native.sse import RawEvents, bytes_of, fields
from gateway.providers._http import (
    UpstreamClient,
    body_chunks,
    event_stream,
    in_stream_error,
    open_stream,
    parse_event,
)
from gateway.providers._shapes import count, items, obj, object_at, text
from gateway.providers.anthropic import AnthropicProvider, read_progress
from gateway.providers.base import Batch, StreamOutcome, Usage
from gateway.providers.openai import OpenAIProvider, read_usage

__all__ = ["MAX_BODY_BYTES", "AnthropicNative", "Native", "OpenAINative", "bytes_of"]

RequestFor = Callable[[], httpx.Request]
# The largest non-streamed answer read from an upstream (a whole message, not an event).
MAX_BODY_BYTES = 32 * 1024 * 1024


class Native:
    """One client request on the native path: its body, and how its upstream is spoken to."""

    def __init__(self, data: dict[str, Any], stream: bool) -> None:
        self.data = data  # the client's body, parsed; never changed (each attempt copies it)
        self.stream = stream

    provider: ClassVar[type]  # the adapter whose upstream speaks the client's dialect

    @classmethod
    def serves(cls, attempt: Attempt) -> bool:
        """Whether the attempt's upstream speaks the client's dialect (the native path)."""
        return isinstance(adapter_for(attempt), cls.provider)

    def start(self, attempt: Attempt, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        """The attempt's stream: one batch of raw events per read, or the whole body."""
        client, max_event_bytes, request_for = self.upstream(attempt)
        if not self.stream:
            return _whole(client, request_for, self.read_whole, outcome)
        # Claude on Bedrock sends Anthropic's events inside AWS event-stream frames: its
        # adapter re-frames them as the SSE events a direct upstream would have sent.
        adapter = adapter_for(attempt)
        raw_events = getattr(adapter, "raw_events", None)
        decoder = raw_events() if raw_events is not None else RawEvents(max_event_bytes)
        return event_stream(
            client,
            request_for,
            decoder,
            self.on_event,
            outcome,
            content_type=getattr(adapter, "stream_type", "event-stream"),
            unfinished=self.unfinished,
        )

    def body(self, attempt: Attempt) -> dict[str, Any]:
        raise NotImplementedError

    def upstream(self, attempt: Attempt) -> tuple[UpstreamClient, int, RequestFor]:
        """The attempt's client, its max_event_bytes and its request (built when sent)."""
        raise NotImplementedError

    def on_event(self, event: str, outcome: StreamOutcome, batch: Batch) -> bool:
        """Relay one event (into `batch`), reading it if it matters; True at the end marker."""
        raise NotImplementedError

    def unfinished(self, outcome: StreamOutcome) -> UpstreamProtocolError | None:
        raise NotImplementedError

    def read_whole(self, data: Any, outcome: StreamOutcome) -> None:
        """Usage and stop reason of a non-streamed answer."""
        raise NotImplementedError


def adapter_for(attempt: Attempt) -> object:
    """The adapter that serves the attempt's model: a cloud vendor's provider serves several
    dialects (Vertex: Gemini and Claude; Bedrock: Claude and Converse) and names the one."""
    adapter = attempt.provider.adapter
    for_model = getattr(adapter, "for_model", None)
    return adapter if for_model is None else for_model(attempt.upstream_model)


def _merged(data: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The client's fields (in its order), then the entry's params the client did not set."""
    body = dict(data)
    for key, value in params.items():
        body.setdefault(key, value)
    return body


class AnthropicNative(Native):
    """Messages on an `anthropic` provider; `?beta=true` and the version and beta headers
    go up as the client sent them."""

    def __init__(
        self, data: dict[str, Any], stream: bool, headers: Mapping[str, str], beta: bool
    ) -> None:
        super().__init__(data, stream)
        self.headers = headers
        self.beta = beta

    provider = AnthropicProvider

    def body(self, attempt: Attempt) -> dict[str, Any]:
        params = dict(attempt.params)
        if isinstance(stop := params.pop("stop", None), str | list):  # the entry's generic name
            params.setdefault("stop_sequences", [stop] if isinstance(stop, str) else stop)
        body = _merged(self.data, params)
        body["model"] = attempt.upstream_model
        if self.stream:
            body["stream"] = True
        return body

    def upstream(self, attempt: Attempt) -> tuple[UpstreamClient, int, RequestFor]:
        adapter = adapter_for(attempt)
        assert isinstance(adapter, AnthropicProvider)
        request_for = partial(
            adapter.native_request,
            self.body(attempt),
            self.headers,
            stream=self.stream,
            beta=self.beta,
        )
        return adapter.client, adapter.config.max_event_bytes, request_for

    def on_event(self, event: str, outcome: StreamOutcome, batch: Batch) -> bool:
        if event.startswith("event: content_block_delta"):  # the hot case: nothing to read
            batch.append(event)
            return False
        name, data = fields(event)
        if name == "error":  # the client gets the gateway's in-band error in its place
            raise in_stream_error(parse_event(data))
        batch.append(event)
        if name == "message_stop":
            return True
        if name in ("message_start", "message_delta"):
            read_progress(name, parse_event(data), outcome)
        return False

    def unfinished(self, outcome: StreamOutcome) -> UpstreamProtocolError:
        return UpstreamProtocolError("the upstream stream ended before message_stop")

    def read_whole(self, data: Any, outcome: StreamOutcome) -> None:
        message = object_at(data, "a message")
        usage = obj(message, "usage")
        outcome.usage = Usage(count(usage, "input_tokens"), count(usage, "output_tokens"))
        outcome.finish_reason = text(message, "stop_reason")
        outcome.model = text(message, "model")


class OpenAINative(Native):
    """Chat Completions on an `openai` provider. Streams always ask for usage (the gateway
    accounts with it); the usage chunk reaches the client only if the client asked for it."""

    def __init__(self, data: dict[str, Any], stream: bool) -> None:
        super().__init__(data, stream)
        options = data.get("stream_options")
        self.wants_usage = isinstance(options, dict) and options.get("include_usage") is True

    provider = OpenAIProvider

    @classmethod
    def serves(cls, attempt: Attempt) -> bool:
        adapter = attempt.provider.adapter  # a Responses-only upstream is translated to
        return isinstance(adapter, OpenAIProvider) and adapter.config.api == "chat"

    def body(self, attempt: Attempt) -> dict[str, Any]:
        params = dict(attempt.params)
        system = params.pop("system", None)  # the entry's system prompt, when the client has none
        body = _merged(self.data, params)
        messages = body.get("messages")
        if isinstance(system, str) and system and isinstance(messages, list):
            roles = {m.get("role") for m in messages if isinstance(m, dict)}
            if not roles & {"system", "developer"}:
                body["messages"] = [{"role": "system", "content": system}, *messages]
        body["model"] = attempt.upstream_model
        if self.stream:
            body["stream"] = True
            options = body.get("stream_options")
            options = options if isinstance(options, dict) else {}
            body["stream_options"] = {**options, "include_usage": True}
        return body

    def upstream(self, attempt: Attempt) -> tuple[UpstreamClient, int, RequestFor]:
        adapter = adapter_for(attempt)
        assert isinstance(adapter, OpenAIProvider)
        request_for = partial(adapter.native_request, self.body(attempt), stream=self.stream)
        return adapter.client, adapter.config.max_event_bytes, request_for

    def on_event(self, event: str, outcome: StreamOutcome, batch: Batch) -> bool:
        if _plain_chunk(event):  # the hot case: nothing to read
            batch.append(event)
            return False
        name, data = fields(event)
        if name == "error":  # old llama.cpp's `error:` field, or an `event: error`
            raise in_stream_error(parse_event(data))
        if data[:1] != b"{":
            batch.append(event)
            return data.strip() == b"[DONE]"  # else a comment, or an event with no data
        chunk = object_at(parse_event(data), "a chunk")
        if chunk.get("error"):
            raise in_stream_error(chunk)
        choices = items(chunk, "choices")
        if "usage" in chunk or "x_groq" in chunk:
            read_usage(chunk, outcome)
            if not choices and chunk.get("usage") and not self.wants_usage:
                return False  # the usage chunk the gateway asked for on its own behalf
        for choice in choices:
            choice = object_at(choice, "a choice")
            if choice.get("index", 0) == 0 and (finish := text(choice, "finish_reason")):
                outcome.finish_reason = finish
        batch.append(event)
        return False

    def unfinished(self, outcome: StreamOutcome) -> UpstreamProtocolError | None:
        # A finish without [DONE] is complete: some compatible gateways never send it.
        if outcome.finish_reason is None:
            return UpstreamProtocolError("the upstream stream ended before [DONE]")
        return None

    def read_whole(self, data: Any, outcome: StreamOutcome) -> None:
        completion = object_at(data, "a completion")
        read_usage(completion, outcome)
        for choice in items(completion, "choices")[:1]:
            outcome.finish_reason = text(object_at(choice, "a choice"), "finish_reason")
        outcome.model = text(completion, "model")


def _plain_chunk(event: str) -> bool:
    """A chunk with no usage, no finish and no error: relayed without being parsed. (Once the
    gateway asks for usage, OpenAI puts `"usage":null` in every chunk.)"""
    return (
        event.startswith("data: {")
        and ('"usage"' not in event or '"usage":null' in event)
        and ('"finish_reason"' not in event or '"finish_reason":null' in event)
        and '"error"' not in event
    )


async def _whole(
    client: UpstreamClient,
    request_for: RequestFor,
    read: Callable[[Any, StreamOutcome], None],
    outcome: StreamOutcome,
) -> AsyncIterator[Batch]:
    """A non-streamed answer: the upstream's body, whole, as one batch (a 4xx/5xx raises its
    mapped error, before the commit point, like a stream's)."""
    async with open_stream(client, request_for(), content_type="json") as response:
        body = bytearray()
        async for chunk in body_chunks(response):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise UpstreamProtocolError(f"the upstream's answer is over {MAX_BODY_BYTES} bytes")
    read(parse_event(bytes(body)), outcome)
    yield [body.decode("latin-1")]
