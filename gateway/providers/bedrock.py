"""AWS Bedrock: Claude through `invoke-with-response-stream`, other models through the Converse
stream, SigV4-signed or with a Bedrock API key (SPEC §5.2).

Both answer `application/vnd.amazon.eventstream` (`_eventstream`). Claude's frames are `chunk`
events whose payload `{"bytes": base64}` holds one of Anthropic's own events: they are turned
back into the SSE events a direct upstream sends, so the Anthropic adapter reads them, and an
Anthropic client is served natively (`for_model`). Converse frames are typed events
(`contentBlockDelta` with `delta.text`, `messageStop` with the stop reason, then `metadata`
with the usage). Exceptions inside the stream (`:message-type: exception`) are mapped like any
upstream error: throttling → 429, validation → 400, model stream errors and unavailability →
502 `upstream_unavailable` (`_http.in_stream_error`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson
from pydantic import model_validator

from gateway.errors import UpstreamProtocolError
from gateway.providers._eventstream import EventStreamDecoder, Frame
from gateway.providers._http import (
    HTTPProviderConfig,
    UpstreamClient,
    event_stream,
    in_stream_error,
    parse_event,
)
from gateway.providers._shapes import object_at, text
from gateway.providers._sse import SSEEvent
from gateway.providers.anthropic import (
    AnthropicConfig,
    AnthropicProvider,
    message_reader,
    unfinished,
)
from gateway.providers.auth import KeyHeader, RequestAuth
from gateway.providers.base import Batch, ChatRequest, StreamOutcome
from gateway.providers.converse import ConverseEvents, converse_body

__all__ = ["ANTHROPIC_VERSION", "BedrockConfig", "BedrockProvider", "ClaudeEvents"]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
STREAM_TYPE = "vnd.amazon.eventstream"


class BedrockConfig(HTTPProviderConfig):
    type: Literal["bedrock"] = "bedrock"
    base_url: str = ""  # default: from the region
    region: str
    profile: str | None = None  # a named profile of the shared AWS files; default: the chain's
    # A Bedrock API key, sent as a bearer token (only over https) instead of signing.
    bearer_token_env: str = "AWS_BEARER_TOKEN_BEDROCK"  # noqa: S105  # a variable's name

    @model_validator(mode="before")
    @classmethod
    def _default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("base_url") and data.get("region"):
            data = {**data, "base_url": f"https://bedrock-runtime.{data['region']}.amazonaws.com"}
        return data

    @model_validator(mode="after")
    def _credentials(self) -> BedrockConfig:
        if self.api_key is not None or self.api_key_env is not None:
            raise ValueError(
                "bedrock signs with AWS credentials, or takes a Bedrock API key from "
                "bearer_token_env: api_key is not used"
            )
        if self.bearer_token() and not self.base_url.startswith("https://"):
            raise ValueError(f"${self.bearer_token_env} is sent only over https: check base_url")
        return self

    def bearer_token(self) -> str | None:
        return os.environ.get(self.bearer_token_env) or None

    def model_url(self, model: str, method: str) -> str:
        # Quoted whole (a model id has `:`, an ARN `/`): no name walks the path.
        return f"{self.base_url}/model/{quote(model, safe='')}/{method}"


def is_claude(model: str) -> bool:
    """Anthropic's models on Bedrock: `anthropic.claude-…`, inference profiles
    `us.anthropic.claude-…`, and their ARNs."""
    return "anthropic.claude" in model


class ClaudeEvents:
    """Claude's event-stream frames as Anthropic's SSE events: `SSEEvent`s for the Anthropic
    adapter, or (`raw`) the events' text for the native path. An exception frame becomes an
    `error` event, which both raise from after the events before it in the same read."""

    __slots__ = ("_frames", "_raw")

    def __init__(self, max_event_bytes: int, *, raw: bool) -> None:
        self._frames = EventStreamDecoder(max_event_bytes)
        self._raw = raw

    def feed(self, chunk: bytes) -> list[Any]:
        events: list[Any] = []
        for frame in self._frames.feed(chunk):
            name, data = _anthropic_event(frame)
            if name is None:
                continue
            if self._raw:
                events.append(f"event: {name}\ndata: {data.decode('latin-1')}\n\n")
            else:
                events.append(SSEEvent(name, data))
        return events


def _exception(frame: Frame) -> bytes:
    """An exception frame as an Anthropic error event's JSON, classified by its type."""
    try:
        message = text(object_at(orjson.loads(frame.payload), "an exception"), "message")
    except (orjson.JSONDecodeError, UpstreamProtocolError):
        message = None
    error = {"type": frame.name or frame.kind, "message": message or frame.name or frame.kind}
    return orjson.dumps({"type": "error", "error": error})


def _anthropic_event(frame: Frame) -> tuple[str | None, bytes]:
    if frame.kind != "event":
        return "error", _exception(frame)
    if frame.name != "chunk":
        return None, b""  # no other event is defined; a new one is not answer text
    payload = object_at(parse_event(frame.payload), "a chunk")
    encoded = text(payload, "bytes")
    try:
        data = base64.b64decode(encoded or "", validate=True)
    except (binascii.Error, ValueError):
        raise UpstreamProtocolError("the upstream sent a chunk that is not base64") from None
    # Anthropic's events open with their type: read it without parsing the whole event.
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 9:
            return data[9:end].decode("latin-1"), data
    name = text(object_at(parse_event(data), "an event"), "type")
    if not name:
        raise UpstreamProtocolError("the upstream sent an event without a type")
    return name, data


class BedrockClaude(AnthropicProvider):
    stream_type = STREAM_TYPE

    def __init__(self, config: BedrockConfig, client: UpstreamClient, auth: RequestAuth) -> None:
        super().__init__(AnthropicConfig(base_url=config.base_url), client)
        self.bedrock = config
        self.auth = auth
        self.config = config  # type: ignore[assignment]  # the headers and limits are Bedrock's

    def post(
        self, body: dict[str, Any], headers: dict[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        body = dict(body)
        model = str(body.pop("model", ""))
        body.pop("stream", None)  # the URL says it
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        headers.pop("anthropic-version", None)
        if betas := headers.pop("anthropic-beta", None):  # in the body on Bedrock
            body.setdefault("anthropic_beta", [beta.strip() for beta in betas.split(",")])
        headers["Accept"] = "application/vnd.amazon.eventstream" if stream else "application/json"
        method = "invoke-with-response-stream" if stream else "invoke"
        return self._client.post_json(
            self.bedrock.model_url(model, method), body, headers, self.auth
        )

    def raw_events(self) -> ClaudeEvents:
        return ClaudeEvents(self.bedrock.max_event_bytes, raw=True)

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        return event_stream(
            self._client,
            partial(self.build_request, request),
            ClaudeEvents(self.bedrock.max_event_bytes, raw=False),
            message_reader(),
            outcome,
            content_type=STREAM_TYPE,
            unfinished=unfinished,
        )


class BedrockConverse:
    """Every other model, through `/model/{id}/converse-stream`."""

    def __init__(self, config: BedrockConfig, client: UpstreamClient, auth: RequestAuth) -> None:
        self.config = config
        self._client = client
        self.auth = auth

    def build_request(self, request: ChatRequest) -> httpx.Request:
        headers = {"Accept": "application/vnd.amazon.eventstream", **self.config.headers}
        url = self.config.model_url(request.model, "converse-stream")
        return self._client.post_json(url, converse_body(request), headers, self.auth)

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        frames = EventStreamDecoder(self.config.max_event_bytes)
        return event_stream(
            self._client,
            partial(self.build_request, request),
            frames,
            partial(_on_converse, ConverseEvents()),
            outcome,
            content_type=STREAM_TYPE,
            unfinished=partial(_converse_unfinished, frames),
        )

    async def aclose(self) -> None:
        return None


def _on_converse(
    events: ConverseEvents, frame: Frame, outcome: StreamOutcome, batch: Batch
) -> bool:
    if frame.kind != "event":
        raise in_stream_error(orjson.loads(_exception(frame)))
    return events(frame, outcome, batch)


def _converse_unfinished(
    frames: EventStreamDecoder, outcome: StreamOutcome
) -> UpstreamProtocolError | None:
    if frames.pending:  # the body ended inside a message (the usage may be what is cut)
        return UpstreamProtocolError("the upstream stream ended inside an event-stream message")
    if outcome.finish_reason is None:
        return UpstreamProtocolError("the upstream stream ended before messageStop")
    return None


class BedrockProvider:
    def __init__(self, config: BedrockConfig, client: UpstreamClient) -> None:
        self.config = config
        key = config.bearer_token()
        self.auth: RequestAuth = KeyHeader("Authorization", lambda: f"Bearer {key}")
        if not key:
            # Imported here: botocore costs start-up time and memory only where it is used.
            from gateway.providers.auth.aws import SigV4

            self.auth = SigV4(config.region, config.profile)
        self.claude = BedrockClaude(config, client, self.auth)
        self.converse = BedrockConverse(config, client, self.auth)

    def for_model(self, model: str) -> BedrockClaude | BedrockConverse:
        return self.claude if is_claude(model) else self.converse

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        return self.for_model(request.model).stream(request, outcome)

    async def start(self) -> None:
        await self.auth.start()

    async def aclose(self) -> None:
        await self.auth.aclose()
