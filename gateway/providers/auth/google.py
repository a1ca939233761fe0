"""Google OAuth2 access tokens for Vertex AI, from google-auth.

Credentials are found as Google's SDKs find them (application default credentials:
GOOGLE_APPLICATION_CREDENTIALS, gcloud's user or service-account file, workload identity
federation, the metadata server), or read from a configured file. Service accounts sign a JWT
assertion and exchange it at the `token_uri` their file names; google-auth does all of it.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import google.auth
import google.auth.credentials
import google.auth.transport.requests
from google.oauth2 import service_account

from gateway.providers.auth import FreshTokens, Token

__all__ = ["SCOPE", "GoogleTokens"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _load(credentials_file: Path | None) -> google.auth.credentials.Credentials:
    if credentials_file is not None:
        # A service account's key file, named in the configuration (google-auth deprecated
        # loading files of any credential type for want of validation: other types go through
        # application default credentials, GOOGLE_APPLICATION_CREDENTIALS).
        return service_account.Credentials.from_service_account_file(  # type: ignore[no-any-return,no-untyped-call]
            str(credentials_file), scopes=[SCOPE]
        )
    found, _project = google.auth.default(scopes=[SCOPE])
    assert isinstance(found, google.auth.credentials.Credentials)
    return found


class GoogleTokens(FreshTokens):
    """`Authorization: Bearer` with a Google access token kept fresh in the background."""

    what = "Google access token"

    def __init__(self, credentials_file: Path | None) -> None:
        self._file = credentials_file
        self._credentials: google.auth.credentials.Credentials | None = None
        self._transport = google.auth.transport.requests.Request()
        super().__init__()

    def _fetch(self) -> Token:
        """Blocking: runs in a worker thread (`Refreshing`)."""
        if self._credentials is None:
            self._credentials = _load(self._file)
        credentials = self._credentials
        credentials.refresh(self._transport)  # type: ignore[no-untyped-call]
        expiry = credentials.expiry  # naive UTC, or None
        expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else None
        return Token({"Authorization": f"Bearer {credentials.token}"}, expires_at)
