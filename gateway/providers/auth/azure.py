"""Microsoft Entra ID tokens for Azure OpenAI, from azure-identity.

`DefaultAzureCredential` finds credentials as Azure's SDKs do: environment (client secret or
certificate), workload identity, managed identity, the Azure CLI, and so on.
"""

from __future__ import annotations

import httpx
from azure.identity import DefaultAzureCredential

from gateway.providers.auth import Refreshing, Token

__all__ = ["SCOPE", "EntraTokens"]

SCOPE = "https://cognitiveservices.azure.com/.default"


class EntraTokens:
    """`Authorization: Bearer` with an Entra ID token kept fresh in the background."""

    def __init__(self) -> None:
        self._credential: DefaultAzureCredential | None = None
        self.tokens = Refreshing("Entra ID token", self._fetch)

    def _fetch(self) -> Token:
        """Blocking: runs in a worker thread (`Refreshing`)."""
        if self._credential is None:
            self._credential = DefaultAzureCredential()
        token = self._credential.get_token(SCOPE)
        return Token({"Authorization": f"Bearer {token.token}"}, float(token.expires_on))

    def headers(self, method: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        value = self.tokens.current()
        assert isinstance(value, dict)
        return value

    def refused(self) -> None:
        self.tokens.renew()

    async def start(self) -> None:
        await self.tokens.start()

    async def aclose(self) -> None:
        await self.tokens.aclose()
        if self._credential is not None:
            self._credential.close()
