"""Google Vertex AI: Gemini and Claude, with Google OAuth2 access tokens (SPEC §5.2).

`{base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}`
followed by `:streamGenerateContent?alt=sse` for Gemini (the Gemini adapter's body and stream)
or `:streamRawPredict` for Claude (the Anthropic adapter's, with `anthropic_version` in the
body in place of the header and the model only in the URL; `:rawPredict` when not streaming).
The publisher follows the model (`claude-*` → anthropic, else google) unless set. An Anthropic
client on a Claude model is served natively (`for_model`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import FilePath, model_validator

from gateway.providers._http import HTTPProviderConfig, UpstreamClient
from gateway.providers.anthropic import AnthropicConfig, AnthropicProvider
from gateway.providers.auth import RequestAuth
from gateway.providers.base import Batch, ChatRequest, StreamOutcome
from gateway.providers.gemini import GeminiConfig, GeminiProvider

__all__ = ["ANTHROPIC_VERSION", "VertexConfig", "VertexProvider"]

ANTHROPIC_VERSION = "vertex-2023-10-16"


class VertexConfig(HTTPProviderConfig):
    type: Literal["vertex"] = "vertex"
    base_url: str = ""  # default: from the location
    project: str
    location: str
    publisher: Literal["google", "anthropic"] | None = None  # default: from the model
    credentials_file: FilePath | None = None  # default: application default credentials

    @model_validator(mode="before")
    @classmethod
    def _default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("base_url") and data.get("location"):
            location = data["location"]
            host = "aiplatform" if location == "global" else f"{location}-aiplatform"
            data = {**data, "base_url": f"https://{host}.googleapis.com"}
        return data

    @model_validator(mode="after")
    def _no_key(self) -> VertexConfig:
        if self.api_key is not None or self.api_key_env is not None:
            raise ValueError("vertex authenticates with Google credentials, not api_key")
        return self

    def model_url(self, publisher: str, model: str, method: str) -> str:
        # The model lands in the URL path: quoted whole, so no name walks the path.
        return (
            f"{self.base_url}/v1/projects/{quote(self.project, safe='')}"
            f"/locations/{quote(self.location, safe='')}/publishers/{publisher}"
            f"/models/{quote(model, safe='')}:{method}"
        )


class VertexGemini(GeminiProvider):
    def __init__(self, config: VertexConfig, client: UpstreamClient, auth: RequestAuth) -> None:
        super().__init__(GeminiConfig(base_url=config.base_url), client)
        self.vertex = config
        self.auth = auth
        self.config = config  # type: ignore[assignment]  # the headers and limits are Vertex's

    def post(self, model: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Request:
        url = self.vertex.model_url("google", model, "streamGenerateContent?alt=sse")
        return self._client.post_json(url, body, headers, self.auth)


class VertexClaude(AnthropicProvider):
    def __init__(self, config: VertexConfig, client: UpstreamClient, auth: RequestAuth) -> None:
        super().__init__(AnthropicConfig(base_url=config.base_url), client)
        self.vertex = config
        self.auth = auth
        self.config = config  # type: ignore[assignment]

    def post(
        self, body: dict[str, Any], headers: dict[str, str], *, stream: bool, beta: bool
    ) -> httpx.Request:
        body = dict(body)
        model = str(body.pop("model", ""))
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        headers.pop("anthropic-version", None)  # in the body on Vertex
        method = "streamRawPredict" if stream else "rawPredict"
        url = self.vertex.model_url("anthropic", model, method)
        return self._client.post_json(url, body, headers, self.auth)


class VertexProvider:
    def __init__(self, config: VertexConfig, client: UpstreamClient) -> None:
        self.config = config
        # Imported here: google-auth costs start-up time and memory only where it is used.
        from gateway.providers.auth.google import GoogleTokens

        self.auth = GoogleTokens(config.credentials_file)
        self.gemini = VertexGemini(config, client, self.auth)
        self.claude = VertexClaude(config, client, self.auth)

    def for_model(self, model: str) -> GeminiProvider | AnthropicProvider:
        publisher = self.config.publisher
        if publisher is None:
            publisher = "anthropic" if model.startswith("claude") else "google"
        return self.claude if publisher == "anthropic" else self.gemini

    def stream(self, request: ChatRequest, outcome: StreamOutcome) -> AsyncIterator[Batch]:
        return self.for_model(request.model).stream(request, outcome)

    async def start(self) -> None:
        await self.auth.start()

    async def aclose(self) -> None:
        await self.auth.aclose()
