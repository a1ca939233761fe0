"""OpenAI's text-to-speech on `openai` providers (SPEC §4.3): the binary counterpart of the relay.

The body goes up with the entry's model and the provider's key; the answer's bytes come back
unchanged, each network read relayed as it arrives (a batch of one latin-1 `str`, the native
path's way of carrying bytes through the relay), with the upstream's media type. Everything
around it is any stream's: attempts, fallbacks and time-outs before the first bytes, limits,
metrics, a client leaving, shutdown. A failure after the first bytes cuts the response short
(audio has no in-band error): the client sees a body that did not end properly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.models import Attempt
from gateway.native import Native
from gateway.providers._http import body_chunks, open_stream
from gateway.providers.base import Batch, StreamOutcome
from gateway.providers.openai import OpenAIProvider

__all__ = ["Speech"]


class Speech(Native):
    provider = OpenAIProvider

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data, stream=True)
        self.media_type = "application/octet-stream"  # the upstream's, once it answered

    def body(self, attempt: Attempt) -> dict[str, Any]:
        body = dict(self.data)
        body["model"] = attempt.upstream_model
        return body

    def start(self, attempt: Attempt, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        adapter = attempt.provider.adapter
        assert isinstance(adapter, OpenAIProvider)
        return self._relay(adapter, self.body(attempt), outcome)

    async def _relay(
        self, adapter: OpenAIProvider, body: dict[str, Any], outcome: StreamOutcome
    ) -> AsyncIterator[Batch]:
        request = adapter.speech_request(body)
        # Any 2xx media type is the answer's (audio/mpeg, audio/wav, text/event-stream for
        # `stream_format: "sse"`, ...): "" is in every content type.
        async with open_stream(adapter.client, request, content_type="") as response:
            self.media_type = response.headers.get("content-type", self.media_type)
            async for chunk in body_chunks(response):
                if chunk:
                    yield [chunk.decode("latin-1")]
        outcome.finish_reason = "stop"
