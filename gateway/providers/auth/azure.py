"""Microsoft Entra ID tokens for Azure OpenAI, from azure-identity.

`DefaultAzureCredential` finds credentials as Azure's SDKs do: environment (client secret or
certificate), workload identity, managed identity, the Azure CLI, and so on.
"""

from __future__ import annotations

from azure.identity import DefaultAzureCredential

from gateway.providers.auth import FreshTokens, Token

__all__ = ["SCOPE", "EntraTokens"]

SCOPE = "https://cognitiveservices.azure.com/.default"


class EntraTokens(FreshTokens):
    """`Authorization: Bearer` with an Entra ID token kept fresh in the background."""

    what = "Entra ID token"

    def __init__(self) -> None:
        self._credential: DefaultAzureCredential | None = None
        super().__init__()

    def _fetch(self) -> Token:
        """Blocking: runs in a worker thread (`Refreshing`)."""
        if self._credential is None:
            self._credential = DefaultAzureCredential()
        token = self._credential.get_token(SCOPE)
        return Token({"Authorization": f"Bearer {token.token}"}, float(token.expires_on))

    async def aclose(self) -> None:
        await super().aclose()
        if self._credential is not None:
            self._credential.close()
