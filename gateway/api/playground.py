"""GET /playground: one self-contained page to try the gateway in a browser (SPEC §4.8).

The page (`playground.html`, package data) is static: inline CSS and JS, no CDN, no secrets.
It is read once at import, and its Content-Security-Policy allows exactly its own inline
<style> and <script> by SHA-256 hash (so the bytes served are always the bytes hashed, with no
per-response templating), no inline event handlers, no other origin, and fetches to this
origin only. It needs no gateway key: a browser cannot send a header when it opens a page, so
the page loads, asks for the key, and sends it on every API call it makes (see
docs/SECURITY.md). `playground = false` leaves the route out (404).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Response

__all__ = ["PLAYGROUND", "Page", "router"]

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    csp: str

    @classmethod
    def load(cls) -> Page:
        body = resources.files("gateway.api").joinpath("playground.html").read_bytes()
        return cls(body, content_security_policy(body))


def content_security_policy(html: bytes) -> str:
    """A policy that allows the page's own inline <script> and <style> blocks and nothing else."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for tag, content in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes[b'script'])}",
            f"style-src {' '.join(hashes[b'style'])}",
            "connect-src 'self'",
            "img-src data:",  # the empty favicon, so the browser asks for no /favicon.ico
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


PLAYGROUND = Page.load()

_HEADERS = {
    "Content-Security-Policy": PLAYGROUND.csp,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter()


@router.get("/playground", include_in_schema=False)
async def playground() -> Response:
    return Response(PLAYGROUND.body, media_type="text/html; charset=utf-8", headers=_HEADERS)
