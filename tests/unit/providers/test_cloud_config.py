"""The cloud vendors' provider settings (SPEC §5.2) and the credential refresher: defaults,
the validation `gateway check-config` reports, and what requests get when no credential is in
hand."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import respx

from gateway.errors import (
    UpstreamAuth,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers._http import build_client
from gateway.providers.auth import Refreshing, Token, refresh_delay
from gateway.providers.base import ChatMessage, ChatRequest, StreamOutcome
from gateway.providers.bedrock import BedrockConfig, BedrockProvider
from gateway.settings import ConfigError
from tests.conftest import settings_from


def provider(toml: str) -> str:
    return f"[providers.p]\n{toml}\n[models.m]\nprovider = 'p'\nmodel = 'x'\n"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("type = 'azure'\nbase_url = 'https://r.openai.azure.com'", "api_key_env"),
        (
            "type = 'azure'\nbase_url = 'https://r.openai.azure.com'\napi_key = 'k'\nentra_id = true",
            "not both",
        ),
        ("type = 'vertex'\nlocation = 'us-east5'", "project"),
        ("type = 'vertex'\nproject = 'p'\nlocation = 'l'\napi_key = 'k'", "not api_key"),
        ("type = 'bedrock'", "region"),
        ("type = 'bedrock'\nregion = 'us-east-1'\napi_key_env = 'K'", "api_key is not used"),
    ],
)
def test_cloud_settings_are_validated(toml: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings_from(provider(toml))


def test_default_urls_follow_region_and_location() -> None:
    settings = settings_from(
        "[providers.v]\ntype = 'vertex'\nproject = 'p'\nlocation = 'europe-west4'\n"
        "[providers.g]\ntype = 'vertex'\nproject = 'p'\nlocation = 'global'\n"
        "[providers.b]\ntype = 'bedrock'\nregion = 'eu-central-1'\n"
        "[models.m]\nprovider = 'v'\nmodel = 'x'\n"
    )
    urls = {name: getattr(settings.providers[name], "base_url", None) for name in "vgb"}
    assert urls == {
        "v": "https://europe-west4-aiplatform.googleapis.com",
        "g": "https://aiplatform.googleapis.com",
        "b": "https://bedrock-runtime.eu-central-1.amazonaws.com",
    }


def test_a_bedrock_api_key_only_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-canary")
    with pytest.raises(ConfigError, match="only over https"):
        settings_from(provider("type = 'bedrock'\nregion = 'r'\nbase_url = 'http://127.0.0.1:9'"))
    settings = settings_from(provider("type = 'bedrock'\nregion = 'us-east-1'"))
    assert "bedrock-api-key-canary" in settings.secrets()  # redacted from every log line


@respx.mock
async def test_a_bedrock_api_key_is_a_bearer_token_and_nothing_is_signed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-canary")
    config = BedrockConfig(region="us-east-1")
    route = respx.post(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse-stream"
    ).respond(503, json={"message": "later"})
    adapter = BedrockProvider(config, build_client(config, mockable=True))
    await adapter.start()
    request = ChatRequest("amazon.nova-pro-v1:0", (ChatMessage("user", "hi"),))
    with pytest.raises(UpstreamUnavailable, match="later"):
        async for _ in adapter.stream(request, StreamOutcome()):
            pass
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer bedrock-api-key-canary"
    assert "x-amz-date" not in sent.headers
    await adapter.aclose()


@pytest.mark.parametrize(
    ("status", "error_type", "error"),
    [
        (429, "ThrottlingException", UpstreamRateLimited),
        (400, "ValidationException", UpstreamRejected),
        (403, "AccessDeniedException", UpstreamAuth),
        (424, "ModelErrorException", UpstreamUnavailable),
        (408, "ModelTimeoutException", UpstreamTimeout),
        (503, "ServiceUnavailableException", UpstreamUnavailable),
    ],
)
@respx.mock
async def test_bedrock_error_statuses_are_mapped(
    monkeypatch: pytest.MonkeyPatch, status: int, error_type: str, error: type[Exception]
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-canary")
    config = BedrockConfig(region="us-east-1")
    respx.post(url__regex=r".*/invoke-with-response-stream$").respond(
        status, json={"message": f"{error_type}: no"}, headers={"x-amzn-ErrorType": error_type}
    )
    adapter = BedrockProvider(config, build_client(config, mockable=True))
    request = ChatRequest("anthropic.claude-3-haiku-20240307-v1:0", (ChatMessage("user", "hi"),))
    with pytest.raises(error, match="no"):
        async for _ in adapter.stream(request, StreamOutcome()):
            pass


async def test_refreshing_keeps_the_reason_and_refuses_when_none_is_in_hand() -> None:
    def fail() -> Token:
        raise OSError("metadata service unreachable")

    tokens = Refreshing("AWS credentials", fail)
    with pytest.raises(UpstreamAuth, match="not fetched yet"):
        tokens.current()
    await tokens.start()
    with pytest.raises(UpstreamAuth, match="OSError: metadata service unreachable"):
        tokens.current()
    await tokens.aclose()
    await tokens.aclose()  # twice is harmless


async def test_an_expired_credential_that_could_not_be_renewed_is_refused() -> None:
    calls = 0

    def fetch() -> Token:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("invalid_grant")
        return Token("t", time.time() - 1)  # already expired once it arrives

    tokens = Refreshing("Google access token", fetch)
    await tokens.start()
    with pytest.raises(UpstreamAuth, match="expired and could not be renewed"):
        tokens.current()
    await tokens.aclose()


async def test_a_refused_credential_is_renewed_at_once_but_not_hammered() -> None:
    calls = 0

    def fetch() -> Token:
        nonlocal calls
        calls += 1
        return Token(f"static-{calls}", None)  # never expires: renewed only when refused

    tokens = Refreshing("AWS credentials", fetch)
    await tokens.start()
    assert tokens.current() == "static-1"
    tokens.renewed.clear()
    tokens.renew()  # the upstream refused it
    await asyncio.wait_for(tokens.renewed.wait(), 10)
    assert tokens.current() == "static-2"
    tokens.renew()  # refused again at once: not another fetch within FORCED_EVERY_S
    assert not tokens._wake.is_set()
    await tokens.aclose()
    assert calls == 2


def test_renewal_comes_well_before_expiry() -> None:
    now = time.time()
    hour = Token("t", now + 3600)
    assert 3290 < (refresh_delay(hour) or 0) <= 3300  # five minutes ahead
    short = Token("t", now + 10)
    assert 4 < (refresh_delay(short) or 0) <= 5  # half way through a short life
    assert refresh_delay(Token("t", None)) is None


def test_key_shaped_cloud_credentials_are_redacted() -> None:
    from gateway.redaction import KEY_SHAPED

    text = "AKIAIOSFODNN7EXAMPLE ya29.a0AfH6SMBx-y eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig"
    assert KEY_SHAPED.sub("[redacted]", text) == "[redacted] [redacted] [redacted]"


def test_a_google_credentials_file_that_is_not_a_service_account_is_refused(
    tmp_path: Path,
) -> None:
    from gateway.providers.auth.google import GoogleTokens

    path = tmp_path / "user.json"
    path.write_text('{"type": "authorized_user"}')
    with pytest.raises(ValueError):
        GoogleTokens(path)._fetch()


async def test_no_aws_credentials_anywhere_is_upstream_auth_naming_the_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gateway.providers.auth.aws import SigV4

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    signer = SigV4("us-east-1", None)
    await signer.start()
    with pytest.raises(UpstreamAuth, match="no AWS credentials found"):
        signer.headers("POST", httpx.URL("https://bedrock-runtime.us-east-1.amazonaws.com/"), b"")
    await signer.aclose()


async def test_entra_tokens_close_their_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.credentials import AccessToken

    from gateway.providers.auth.azure import EntraTokens

    closed: list[bool] = []

    class Credential:
        def get_token(self, scope: str) -> AccessToken:
            return AccessToken("eyJ0eXAiOiJKV1QifQ.entra", int(time.time()) + 3600)

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr("gateway.providers.auth.azure.DefaultAzureCredential", Credential)
    tokens = EntraTokens()
    await tokens.start()
    url = httpx.URL("https://r.openai.azure.com/")
    assert tokens.headers("POST", url, b"") == {"Authorization": "Bearer eyJ0eXAiOiJKV1QifQ.entra"}
    await tokens.aclose()
    assert closed == [True]
