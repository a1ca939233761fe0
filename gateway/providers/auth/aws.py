"""AWS request signing for Bedrock: SigV4 with botocore, or a Bedrock API key.

Credentials come from botocore's standard chain (environment, shared config and credentials
files and profiles, web identity, SSO, container and instance metadata), as the AWS SDKs find
them. Temporary credentials are renewed by botocore itself when asked within its refresh
window; the gateway asks from a background thread every `POLL_S`, so the request path only
ever signs with credentials already frozen in hand.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

from gateway.providers.auth import FreshTokens, Token

if TYPE_CHECKING:
    from botocore.credentials import Credentials

# botocore (about 20 MiB once imported) is imported when a Bedrock provider first signs or
# fetches credentials, not when the gateway starts: most gateways never talk to AWS.

__all__ = ["SERVICE", "SigV4"]

SERVICE = "bedrock"
# botocore renews temporary credentials 15 minutes before they expire (10 at the latest) when
# asked: asking every minute keeps that renewal off the request path.
POLL_S = 60.0


class SigV4(FreshTokens):
    """Signs each request with credentials from the standard AWS chain (`profile` optional)."""

    what = "AWS credentials"

    def __init__(self, region: str, profile: str | None) -> None:
        self._region = region
        self._profile = profile
        self._credentials: Credentials | None = None
        super().__init__()

    def _fetch(self) -> Token:
        """Blocking: runs in a worker thread (`Refreshing`)."""
        if self._credentials is None:
            import botocore.session

            session = botocore.session.Session(profile=self._profile)
            found = session.get_credentials()
            if found is None:
                raise LookupError("no AWS credentials found in the standard chain")
            self._credentials = found
        frozen = self._credentials.get_frozen_credentials()
        temporary = getattr(self._credentials, "refresh_needed", None) is not None
        return Token(frozen, time.time() + POLL_S * 2 if temporary else None)

    def headers(self, method: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import ReadOnlyCredentials

        credentials = self.tokens.current()
        assert isinstance(credentials, ReadOnlyCredentials)
        # Only what the gateway sets itself is signed: the other headers (trace context,
        # user agent) may be added or changed by the HTTP client without breaking anything.
        request = AWSRequest(
            method=method, url=str(url), data=body, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(credentials, SERVICE, self._region).add_auth(request)
        signed = {"Authorization": request.headers["Authorization"]}
        signed["X-Amz-Date"] = request.headers["X-Amz-Date"]
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        return signed
