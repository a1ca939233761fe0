"""The provider registry: a literal dict from `type` to adapter, and the shared clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from gateway.providers._http import UpstreamClient, build_client
from gateway.providers.anthropic import AnthropicConfig, AnthropicProvider
from gateway.providers.azure import AzureConfig, AzureProvider
from gateway.providers.base import Provider, ProviderSettings
from gateway.providers.bedrock import BedrockConfig, BedrockProvider
from gateway.providers.fake import FakeConfig, FakeProvider
from gateway.providers.gemini import GeminiConfig, GeminiProvider
from gateway.providers.ollama import OllamaConfig, OllamaProvider
from gateway.providers.openai import OpenAIConfig, OpenAIProvider
from gateway.providers.vertex import VertexConfig, VertexProvider

__all__ = ["PROVIDERS", "ProviderConfig", "RegisteredProvider", "open_registry"]

ProviderConfig = Annotated[
    FakeConfig
    | OpenAIConfig
    | AnthropicConfig
    | GeminiConfig
    | OllamaConfig
    | AzureConfig
    | VertexConfig
    | BedrockConfig,
    Field(discriminator="type"),
]

# type -> factory(config, shared client or None); one line per provider.
PROVIDERS: dict[str, Callable[[Any, UpstreamClient], Provider]] = {
    "fake": lambda config, _client: FakeProvider(config),
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
    "azure": AzureProvider,
    "vertex": VertexProvider,
    "bedrock": BedrockProvider,
}


@dataclass(frozen=True, slots=True)
class RegisteredProvider:
    name: str
    config: ProviderSettings
    adapter: Provider


@asynccontextmanager
async def open_registry(
    configs: Mapping[str, ProviderSettings],
    overrides: Mapping[str, Provider] | None = None,
) -> AsyncIterator[dict[str, RegisteredProvider]]:
    """Build every configured adapter once, each with its own pooled client; close them after.

    `overrides` replaces adapters by provider name (tests inject gated fakes this way).
    """
    overrides = overrides or {}
    clients: list[UpstreamClient] = []
    registry: dict[str, RegisteredProvider] = {}
    try:
        for name, config in configs.items():
            adapter = overrides.get(name)
            if adapter is None:
                client = build_client(config)
                clients.append(client)
                adapter = PROVIDERS[config.type](config, client)  # type: ignore[attr-defined]
            registry[name] = RegisteredProvider(name, config, adapter)
        for entry in registry.values():
            # Cloud vendors' adapters fetch their first credentials now, and keep them
            # fresh in the background from here on (gateway.providers.auth).
            start = getattr(entry.adapter, "start", None)
            if start is not None:
                await start()
        yield registry
    finally:
        for entry in registry.values():
            await entry.adapter.aclose()
        for client in clients:
            await client.aclose()
