"""Azure OpenAI, Vertex AI (Gemini and Claude) and Bedrock through a real gateway, against
offline fakes of the vendors on real sockets (tests/e2e/cloud_fakes.py): their URL shapes,
their credentials (a service account's signed assertion, short-lived tokens renewed in the
background, SigV4 signatures recomputed by the fake), Bedrock's binary frames cut at every
offset class, and no credential, token or signature in any log line or response."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.observability import configure_logging
from tests.conftest import settings_from
from tests.e2e.cloud_fakes import (
    AWS,
    AZURE_KEY,
    CloudFake,
    claude_chunk,
    claude_events,
    claude_sse,
    event,
    exception,
    frame,
    service_account,
)
from tests.e2e.conftest import wait_for
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

ANTHROPIC_BODY = {
    "model": "claude",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
    "stream": True,
}


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The standard AWS chain finds the fake's credentials in the environment, and nothing
    else of the machine's (no shared files, no instance metadata)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS.token)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def config(upstream: str, account_file: Path | None = None) -> str:
    vertex_credentials = f"credentials_file = '{account_file}'\n" if account_file else ""
    return (
        f"[providers.azure-v1]\ntype = 'azure'\nbase_url = '{upstream}'\n"
        "api_key_env = 'TEST_AZURE_KEY'\n"
        f"[providers.azure-dep]\ntype = 'azure'\nbase_url = '{upstream}'\n"
        "api_key_env = 'TEST_AZURE_KEY'\napi_version = '2024-10-21'\n"
        f"[providers.vertex]\ntype = 'vertex'\nbase_url = '{upstream}'\n"
        f"project = 'proj-1'\nlocation = 'us-east5'\n{vertex_credentials}"
        f"[providers.bedrock]\ntype = 'bedrock'\nbase_url = '{upstream}'\nregion = 'us-east-1'\n"
        "[models.gpt]\nprovider = 'azure-v1'\nmodel = 'gpt-4o-up'\n"
        "[models.gpt-dep]\nprovider = 'azure-dep'\nmodel = 'my-deployment'\n"
        "[models.gemini]\nprovider = 'vertex'\nmodel = 'gemini-2.5-flash'\n"
        "[models.claude]\nprovider = 'vertex'\nmodel = 'claude-sonnet-4-5@20250929'\n"
        "[models.bclaude]\nprovider = 'bedrock'\nmodel = 'us.anthropic.claude-sonnet-4-5-v1:0'\n"
        "[models.nova]\nprovider = 'bedrock'\nmodel = 'amazon.nova-pro-v1:0'\n"
    )


@asynccontextmanager
async def cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: CloudFake | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, CloudFake]]:
    fake = fake or CloudFake()
    monkeypatch.setenv("TEST_AZURE_KEY", AZURE_KEY)
    async with serve(fake) as upstream:
        info, fake.public_key = service_account(f"{upstream}/token")
        account_file = tmp_path / "service-account.json"
        account_file.write_text(json.dumps(info))
        app = create_app(settings_from(config(upstream, account_file)))
        fake.gateway = app
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield http, fake


def openai_sse(pieces: list[str], tool: bool = False) -> bytes:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces
    ]
    if tool:
        call = {"index": 0, "id": "call_1", "type": "function"}
        chunks.append(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {**call, "function": {"name": "weather", "arguments": '{"city":'}}
                            ]
                        },
                    }
                ]
            }
        )
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    lines = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    return b"".join(lines) + b"data: [DONE]\n\n"


GEMINI_SSE = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"Bonjour "}],"role":"model"}}]}\n\n'
    b'data: {"candidates":[{"content":{"parts":[{"text":"\xc3\xa0 tous"}],"role":"model"},'
    b'"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}\n\n'
)


def pieces(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def converse_frames(text: list[str]) -> bytes:
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        for piece in text
    ]
    frames += [
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 4, "outputTokens": 2}, "metrics": {}}),
    ]
    return b"".join(frames)


async def test_azure_both_url_forms_with_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.azure_sse = openai_sse(["Hel", "lo ", "wörld"])
        v1 = await http.post("/stream", json={"prompt": "hi", "model": "gpt"})
        deployment = await http.post("/stream", json={"prompt": "hi", "model": "gpt-dep"})
    assert (v1.status_code, v1.text) == (200, "Hello wörld")
    assert (deployment.status_code, deployment.text) == (200, "Hello wörld")
    calls = [seen for seen in fake.seen if seen.path.startswith("/openai/")]
    assert [seen.path for seen in calls] == [
        "/openai/v1/chat/completions",
        "/openai/deployments/my-deployment/chat/completions",
    ]
    assert all(seen.headers["api-key"] == AZURE_KEY for seen in calls)
    assert all("authorization" not in seen.headers for seen in calls)


async def test_an_openai_client_on_azure_is_served_natively_with_its_tool_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.azure_sse = openai_sse(["Hi"], tool=True)
        body = {
            "model": "gpt-dep",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
            "stream": True,
        }
        response = await http.post("/v1/chat/completions", json=body)
    sent = fake.seen[-1].json()
    assert sent["tools"] == body["tools"]  # as the client sent them
    assert sent["model"] == "my-deployment"
    usage_chunk = b'data: {"choices": [], "usage"'
    upstream_events = [
        e for e in fake.azure_sse.split(b"\n\n") if e and not e.startswith(usage_chunk)
    ]
    # The upstream's events, byte for byte (less the usage chunk the client did not ask for).
    assert response.content == b"".join(e + b"\n\n" for e in upstream_events)
    assert b'"name": "weather"' in response.content


async def test_azure_entra_id_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.credentials import AccessToken

    asked: list[str] = []

    class Credential:  # stands in for DefaultAzureCredential's chain, which is azure-identity's
        def get_token(self, scope: str) -> AccessToken:
            asked.append(scope)
            return AccessToken("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-canary", 2**40)

        def close(self) -> None:
            pass

    monkeypatch.setattr("gateway.providers.auth.azure.DefaultAzureCredential", Credential)
    fake = CloudFake(azure_sse=openai_sse(["token ", "auth"]))
    async with serve(fake) as upstream:
        toml = (
            f"[providers.entra]\ntype = 'azure'\nbase_url = '{upstream}'\nentra_id = true\n"
            "[models.gpt]\nprovider = 'entra'\nmodel = 'gpt-4o-up'\n"
        )
        app = create_app(settings_from(toml))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/stream", json={"prompt": "hi", "model": "gpt"})
    assert (response.status_code, response.text) == (200, "token auth")
    assert asked == ["https://cognitiveservices.azure.com/.default"]  # once, at start-up
    assert fake.seen[0].headers["authorization"].startswith("Bearer eyJ")
    assert "api-key" not in fake.seen[0].headers


async def test_azure_wrong_key_is_upstream_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = CloudFake()
    monkeypatch.setenv("TEST_AZURE_KEY", "wrong-key")
    async with serve(fake) as upstream:
        app = create_app(settings_from(config(upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            refused = await http.post("/stream", json={"prompt": "hi", "model": "gpt"})
    assert refused.status_code == 502
    assert refused.json()["error"]["type"] == "upstream_auth"
    assert "wrong-key" not in refused.text


async def test_vertex_gemini_and_claude_with_service_account_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.vertex_sse = GEMINI_SSE
        gemini = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
        fake.vertex_sse = claude_sse(claude_events(["Hello", ", wörld"]))
        claude = await http.post("/stream", json={"prompt": "hi", "model": "claude"})
    assert (gemini.status_code, gemini.text) == (200, "Bonjour à tous")
    assert (claude.status_code, claude.text) == (200, "Hello, wörld")
    token, gemini_call, claude_call = fake.seen
    assert token.path == "/token"
    assert gemini_call.path == (
        "/v1/projects/proj-1/locations/us-east5/publishers/google/models/"
        "gemini-2.5-flash:streamGenerateContent"
    )
    assert claude_call.path == (
        "/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5%4020250929:streamRawPredict"
    )
    assert gemini_call.headers["authorization"] == f"Bearer {fake.issued[0]}"
    assert "x-goog-api-key" not in gemini_call.headers
    assert "anthropic-version" not in claude_call.headers


async def test_an_anthropic_client_on_vertex_claude_is_served_natively_with_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_events = claude_sse(claude_events(["Let me check."], tool=True))
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.vertex_sse = upstream_events
        headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "some-beta"}
        response = await http.post("/v1/messages", json=ANTHROPIC_BODY, headers=headers)
    assert response.status_code == 200
    assert response.content == upstream_events  # byte for byte, tool call included
    sent = fake.seen[-1].json()
    assert sent["tools"] == ANTHROPIC_BODY["tools"]
    assert sent["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent
    assert fake.seen[-1].headers["anthropic-beta"] == "some-beta"


async def test_vertex_token_is_renewed_in_the_background_before_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = CloudFake(token_lifetime=3, vertex_sse=GEMINI_SSE)
    async with serve(fake) as upstream:
        info, fake.public_key = service_account(f"{upstream}/token")
        account_file = tmp_path / "adc.json"
        account_file.write_text(json.dumps(info))
        # Application default credentials, found the way Google's SDKs find them.
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account_file))
        app = create_app(settings_from(config(upstream)))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            first = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
            tokens = app.state.gateway.providers["vertex"].adapter.auth.tokens
            tokens.renewed.clear()
            await wait_for(tokens.renewed)  # renewed with no request asking for it
            second = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
    assert (first.text, second.text) == ("Bonjour à tous", "Bonjour à tous")
    calls = [seen for seen in fake.seen if seen.path != "/token"]
    used = [fake.issued.index(call.headers["authorization"][7:]) for call in calls]
    # The second request carried a token issued after the first one's, with no request
    # having waited for it (however slow this machine is, the order is what is asserted).
    assert used[1] > used[0]


async def test_a_revoked_service_account_is_upstream_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch, CloudFake(revoked=True)) as (http, fake):
        response = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_auth"
    assert "Google access token" in error["message"]
    # Vertex was never called; the token endpoint was asked again, in the background.
    assert {seen.path for seen in fake.seen} == {"/token"}


async def test_a_token_vertex_refuses_is_upstream_auth_and_renewed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.vertex_sse = GEMINI_SSE
        tokens = fake.gateway.state.gateway.providers["vertex"].adapter.auth.tokens
        tokens.renewed.clear()
        fake.tokens.clear()  # revoked on Google's side after it was issued
        refused = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
        await wait_for(tokens.renewed)  # not an hour later, when it would have expired
        again = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
    assert refused.status_code == 502
    assert refused.json()["error"]["type"] == "upstream_auth"
    assert (again.status_code, again.text) == (200, "Bonjour à tous")
    assert len(fake.issued) == 2


@pytest.mark.parametrize("size", [1, 5, 13, 64, 1_000_000])
async def test_bedrock_converse_signed_and_framed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = pieces(converse_frames(["Hello", " from ", "Nova 🚀"]), size)
        response = await http.post("/stream?format=sse", json={"prompt": "hi", "model": "nova"})
    assert response.status_code == 200
    deltas = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith('data: "')
    ]
    assert deltas == ["Hello", " from ", "Nova 🚀"]
    assert '"usage":{"prompt_tokens":4,"completion_tokens":2' in response.text
    _token, call = fake.seen
    assert call.path == "/model/amazon.nova-pro-v1%3A0/converse-stream"
    assert len(fake.signatures) == 1  # verified by the fake, or the answer would be a 403


@pytest.mark.parametrize("size", [1, 7, 1_000_000])
async def test_an_anthropic_client_on_bedrock_claude_gets_anthropic_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    events = claude_events(["Let me", " check."], tool=True)
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = pieces(b"".join(claude_chunk(each) for each in events), size)
        headers = {"anthropic-beta": "beta-one,beta-two"}
        bedrock_body = {**ANTHROPIC_BODY, "model": "bclaude"}
        response = await http.post("/v1/messages", json=bedrock_body, headers=headers)
        fake.bedrock_body = pieces(b"".join(claude_chunk(each) for each in events), size)
        translated = await http.post("/stream", json={"prompt": "hi", "model": "bclaude"})
    assert response.status_code == 200, response.text
    assert response.content == claude_sse(events)  # re-framed as a direct upstream sends them
    assert translated.text == "Let me check."
    call = fake.seen[1]
    assert call.path == "/model/us.anthropic.claude-sonnet-4-5-v1%3A0/invoke-with-response-stream"
    assert call.json()["anthropic_beta"] == ["beta-one", "beta-two"]
    assert "anthropic-beta" not in call.headers


async def test_bedrock_claude_not_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": [{"type": "text", "text": "whole"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_json = json.dumps(message).encode()
        response = await http.post(
            "/v1/messages", json={**ANTHROPIC_BODY, "stream": False, "model": "bclaude"}
        )
    assert response.status_code == 200
    assert response.json() == message
    assert fake.seen[-1].path.endswith("/invoke")


BEDROCK_FAULTS = [
    (exception("throttlingException", "Too many requests"), 429, "upstream_rate_limited"),
    (exception("validationException", "Bad input"), 400, "upstream_rejected"),
    (exception("modelStreamErrorException", "Model broke"), 502, "upstream_unavailable"),
    (exception("serviceUnavailableException", "Later"), 502, "upstream_unavailable"),
    (
        frame({":message-type": "event", ":event-type": "messageStart"}, b"{}", corrupt=True),
        502,
        "upstream_protocol",
    ),
    (event("messageStart", {"role": "assistant"})[:-3], 502, "upstream_protocol"),  # truncated
    (event("messageStart", {"role": "assistant"}), 502, "upstream_protocol"),  # no messageStop
]


@pytest.mark.parametrize(("frames", "status", "type_"), BEDROCK_FAULTS)
async def test_bedrock_faults_before_the_first_delta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: bytes, status: int, type_: str
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = pieces(frames, 3)
        response = await http.post("/stream", json={"prompt": "hi", "model": "nova"})
    assert response.status_code == status
    assert response.json()["error"]["type"] == type_


LATE_FAULTS = [
    (exception("modelStreamErrorException", "The model stopped"), "upstream_unavailable"),
    (exception("throttlingException", "Slow down"), "upstream_rate_limited"),
    # The answer's last message (its usage) cut short: the answer is not known to be whole.
    (event("metadata", {"usage": {"inputTokens": 4, "outputTokens": 2}})[:-3], "upstream_protocol"),
]


@pytest.mark.parametrize(("fault", "type_"), LATE_FAULTS)
async def test_bedrock_fault_after_text_is_the_in_band_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: bytes, type_: str
) -> None:
    frames = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "partial "}})
    if type_ == "upstream_protocol":
        frames += event("messageStop", {"stopReason": "end_turn"})
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = [frames, fault]
        response = await http.post("/stream?format=sse", json={"prompt": "hi", "model": "nova"})
    assert response.status_code == 200
    assert 'data: "partial "' in response.text
    assert "event: error" in response.text and type_ in response.text, response.text


async def test_bedrock_wrong_secret_is_upstream_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = [converse_frames(["x"])]
        response = await http.post("/stream", json={"prompt": "hi", "model": "nova"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_auth"


@pytest.fixture
def gateway_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The gateway's own logging, at debug, as `gateway serve` sets it up."""
    configure_logging("debug", "text", [AZURE_KEY])
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


async def test_no_credential_token_or_signature_in_logs_or_responses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gateway_logs: None,
) -> None:
    texts: list[str] = []
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.azure_sse = openai_sse(["a"])
        fake.vertex_sse = GEMINI_SSE
        fake.bedrock_body = [converse_frames(["b"])]
        for model in ("gpt", "gpt-dep", "gemini", "nova"):
            response = await http.post("/stream?format=sse", json={"prompt": "hi", "model": model})
            assert response.status_code == 200
            texts.append(response.text + str(response.headers))
        fake.tokens.clear()
        refused = await http.post("/stream", json={"prompt": "hi", "model": "gemini"})
        texts.append(refused.text)
    logs = capsys.readouterr().err
    assert "upstream_auth" in logs or "request" in logs  # the gateway did log
    account = json.loads((tmp_path / "service-account.json").read_text())
    key_line = account["private_key"].splitlines()[5]
    secrets = [AZURE_KEY, AWS.secret_key, AWS.token, key_line, *fake.issued, *fake.signatures]
    assert fake.issued and fake.signatures
    for secret in secrets:
        for text in [logs, *texts]:
            assert secret not in text


async def test_credentials_are_fetched_off_the_request_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.vertex_sse = GEMINI_SSE
        before = len(fake.issued)
        results = await asyncio.gather(
            *(http.post("/stream", json={"prompt": "hi", "model": "gemini"}) for _ in range(5))
        )
    assert [r.text for r in results] == ["Bonjour à tous"] * 5
    assert before == 1 and len(fake.issued) == 1  # fetched at start-up, once


async def test_a_bedrock_converse_tool_call_reaches_a_ui_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockStart",
            {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tu1", "name": "weather"}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city":'}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Paris"}'}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 4, "outputTokens": 2}}),
    ]
    chat = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "weather?"}]}],
    }
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.bedrock_body = pieces(b"".join(frames), 5)
        response = await http.post("/ui/chat", json={**chat, "model": "nova"})
    assert response.status_code == 200
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    tool = [chunk for chunk in chunks if chunk["type"].startswith("tool-input")]
    assert tool == [
        {"type": "tool-input-start", "toolCallId": "tu1", "toolName": "weather"},
        {"type": "tool-input-delta", "toolCallId": "tu1", "inputTextDelta": '{"city":'},
        {"type": "tool-input-delta", "toolCallId": "tu1", "inputTextDelta": '"Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "tu1",
            "toolName": "weather",
            "input": {"city": "Paris"},
        },
    ]


async def test_a_vertex_gemini_tool_call_reaches_a_ui_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}
    chunk = {
        "candidates": [{"content": {"parts": [call], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3},
    }
    chat = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "weather?"}]}],
    }
    async with cloud(tmp_path, monkeypatch) as (http, fake):
        fake.vertex_sse = f"data: {json.dumps(chunk)}\n\n".encode()
        response = await http.post("/ui/chat", json={**chat, "model": "gemini"})
    assert response.status_code == 200
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    tool = [chunk for chunk in chunks if chunk["type"].startswith("tool-input")]
    assert [chunk["type"] for chunk in tool] == [
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
    ]
    assert tool[0]["toolName"] == "weather"
    assert tool[-1]["input"] == {"city": "Paris"}
