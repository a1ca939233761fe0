"""Azure OpenAI: OpenAI's Chat Completions at Azure's URLs, with Azure's credentials.

Two URL forms (SPEC §5.2): without `api_version`, the v1 API at
`{base_url}/openai/v1/chat/completions` with the model in the body; with it, the deployment URL
`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`, where the entry's
`model` is the deployment's name. Credentials: the `api-key` header, or Microsoft Entra ID
tokens (`entra_id = true`, azure-identity's default chain). Everything else, the stream
included, is the OpenAI adapter's, so an OpenAI client on an azure provider is served natively.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import model_validator

from gateway.providers._http import UpstreamClient
from gateway.providers.auth import KeyHeader, RequestAuth
from gateway.providers.openai import OpenAIConfig, OpenAIProvider

__all__ = ["AzureConfig", "AzureProvider"]


class AzureConfig(OpenAIConfig):
    type: Literal["azure"] = "azure"  # type: ignore[assignment]
    base_url: str  # the resource endpoint, https://{resource}.openai.azure.com
    api_version: str | None = None  # set: deployment URLs; unset: the v1 API
    entra_id: bool = False  # Entra ID tokens instead of an api-key

    @model_validator(mode="after")
    def _one_credential(self) -> AzureConfig:
        has_key = self.api_key is not None or self.api_key_env is not None
        if self.entra_id and has_key:
            raise ValueError("give api_key / api_key_env or entra_id = true, not both")
        if not self.entra_id and not has_key:
            raise ValueError("give api_key_env (or api_key), or entra_id = true")
        return self


class AzureProvider(OpenAIProvider):
    def __init__(self, config: AzureConfig, client: UpstreamClient) -> None:
        super().__init__(config, client)
        self.azure = config
        self.auth: RequestAuth = KeyHeader("api-key", config.require_key)
        if config.entra_id:
            # Imported here: azure-identity costs start-up time and memory only where used.
            from gateway.providers.auth.azure import EntraTokens

            self.auth = EntraTokens()
        self._urls: dict[str, httpx.URL] = {}

    def url_for(self, model: str) -> httpx.URL:
        """The chat completions URL for `model` (parsed once per deployment)."""
        if self.azure.api_version is None:
            return self._url
        url = self._urls.get(model)
        if url is None:
            # The deployment lands in the URL path: quoted whole, so no name walks the path.
            deployment = quote(model, safe="")
            url = httpx.URL(
                f"{self.azure.base_url}/openai/deployments/{deployment}/chat/completions",
                params={"api-version": self.azure.api_version},
            )
            if len(self._urls) < 1024:
                self._urls[model] = url
        return url

    @staticmethod
    def url_path(base_url: str) -> str:
        return f"{base_url}/openai/v1/chat/completions"

    def post(self, model: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Request:
        return self._client.post_json(self.url_for(model), body, headers, self.auth)

    async def start(self) -> None:
        await self.auth.start()

    async def aclose(self) -> None:
        await self.auth.aclose()
