"""EventSource tokens (SPEC §4.5): `EventSource` cannot send a key, so a key buys a token.

A token is `<key name, base64url>.<expiry, unix seconds>.<HMAC-SHA256, base64url>`, signed with
the secret the replicas share (`token_secret_env`; without it a random one per process). The
MAC covers the key's name, its digest and the expiry, so a token never contains the key, is
worthless for any other key, and dies with the key (a rotated key's old tokens fail). Tokens
are accepted only as `?token=` on `GET /stream` and `GET /stream/{stream}`; a token starts a
generation only before it expires, and reconnects for `RECONNECT_GRACE_S` longer, because
`EventSource` reconnects with the URL it was given, long after the token was issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from gateway.auth import GatewayKey

__all__ = ["RECONNECT_GRACE_S", "TOKEN_TTL_S", "TokenSigner"]

TOKEN_TTL_S = 60
RECONNECT_GRACE_S = 3600
MAX_TOKEN_CHARS = 512


class TokenSigner:
    def __init__(self, secret: str | None) -> None:
        self._secret = secret.encode() if secret else secrets.token_bytes(32)

    def issue(self, key: GatewayKey, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + TOKEN_TTL_S)
        name = _b64(key.name.encode())
        return f"{name}.{expires}.{self._mac(name, expires, key)}"

    def verify(
        self, token: str, keys: list[GatewayKey], reconnect: bool, now: float | None = None
    ) -> GatewayKey | None:
        """The key a token was issued for, or None (bad shape, bad MAC, expired, unknown key)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        name_part, expires_part, mac = token.split(".")
        if not expires_part.isdigit() or len(expires_part) > 12:
            return None
        expires = int(expires_part)
        now = now if now is not None else time.time()
        if now > expires + (RECONNECT_GRACE_S if reconnect else 0):
            return None
        try:
            name = base64.urlsafe_b64decode(name_part + "=" * (-len(name_part) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        found = None
        for key in keys:  # every key, every time: constant work whichever one matches
            expected = self._mac(name_part, expires, key)
            if hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
                found = key
        return found if found is not None and found.name == name else None

    def _mac(self, name_part: str, expires: int, key: GatewayKey) -> str:
        message = b"%s.%d.%s" % (name_part.encode(), expires, key.digest)
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
