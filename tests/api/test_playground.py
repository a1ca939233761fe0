"""GET /playground (SPEC §4.8): the page itself, its headers and its switch.

What the page does in a browser is tested in tests/e2e/test_playground.py (headless Chromium
against a live gateway); these tests pin what can be read from the bytes and the headers.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from gateway.api.playground import PLAYGROUND, content_security_policy
from gateway.auth import hash_key
from tests.conftest import app_client, settings_from

PAGE = PLAYGROUND.body.decode()


def _directives(csp: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in csp.split("; "))}


def _hash_of(content: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode()).digest()).decode() + "'"


async def test_playground_serves_the_page_with_a_strict_csp() -> None:
    async with app_client(settings_from()) as (client, _):
        response = await client.get("/playground")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == PLAYGROUND.body
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    # Exactly the page's own inline blocks, by hash: no 'unsafe-inline', no host, no nonce.
    (script,) = re.findall(r"<script>(.*?)</script>", PAGE, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", PAGE, re.DOTALL)
    assert csp["script-src"] == [_hash_of(script)]
    assert csp["style-src"] == [_hash_of(style)]


def test_playground_csp_follows_the_page_content() -> None:
    # The hash is of the bytes served: an edited script gets a different policy.
    edited = PLAYGROUND.body.replace(b'"use strict";', b'"use strict"; ')
    assert content_security_policy(edited) != PLAYGROUND.csp
    assert "'sha256-" in content_security_policy(b"<script>x</script><style>y</style>")


def test_playground_page_is_small_and_self_contained() -> None:
    assert len(PLAYGROUND.body) < 30 * 1024
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', PAGE))
    assert not re.search(r"https?://", PAGE)  # no other origin, not even in a comment
    assert not re.search(r"<(?:link|script|img|iframe)[^>]*\bsrc=", PAGE)


def test_playground_page_never_parses_strings_as_html_nor_stores_the_key() -> None:
    # Inline event handler attributes would be blocked by the CSP anyway; keep none.
    assert not re.search(r"<[^>]+\son[a-z]+=", PAGE)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in PAGE
    for store in ("localStorage", "sessionStorage", "document.cookie", "history.", "location."):
        assert store not in PAGE


@pytest.mark.parametrize("switch", ["file", "env"])
async def test_playground_false_turns_the_route_off(
    switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if switch == "env":
        monkeypatch.setenv("GATEWAY_PLAYGROUND", "false")
        settings = settings_from()
    else:
        settings = settings_from("playground = false\n")
    async with app_client(settings) as (client, _):
        response = await client.get("/playground")
        healthz = await client.get("/healthz")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert healthz.status_code == 200


async def test_playground_loads_without_a_key_when_keys_are_configured() -> None:
    # The page holds no secret; every API call it makes carries the key typed into it.
    settings = settings_from(f"[keys.web]\nsha256 = '{hash_key('pg-key-123456')}'\n")
    async with app_client(settings) as (client, _):
        page = await client.get("/playground")
        models = await client.get("/v1/models")
    assert page.status_code == 200
    assert models.status_code == 401


async def test_playground_is_not_in_the_openapi_schema() -> None:
    async with app_client(settings_from()) as (client, _):
        schema = (await client.get("/openapi.json")).json()
    assert "/playground" not in schema["paths"]
