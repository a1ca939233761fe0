"""Offline fakes of the cloud vendors' endpoints, on real sockets (tests/e2e/servers.py).

One ASGI app plays Google's token endpoint and Vertex AI, Azure OpenAI and AWS Bedrock, and
checks what the real ones check: the service account's signed assertion (RS256, verified with
its public key), the access tokens it issued and their expiry, Azure's `api-key` header and
URL forms, and every Bedrock request's SigV4 signature, recomputed with botocore from the
same credentials. Bedrock answers real `application/vnd.amazon.eventstream` frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.types import Receive, Scope, Send

from tests.e2e.servers import answered_lifespan, read_body

__all__ = [
    "AWS",
    "AZURE_KEY",
    "CloudFake",
    "claude_sse",
    "frame",
    "service_account",
]

AZURE_KEY = "azure-canary-key-0123456789SECRET"
AWS = ReadOnlyCredentials(
    "AKIAIOSFODNN7CANARY1", "aws-secret-canary/K7MDENG+bPxRfiCYSECRET", "aws-session-canary-TOKEN"
)
PROJECT, LOCATION = "proj-1", "us-east5"


def service_account(token_uri: str) -> tuple[dict[str, str], rsa.RSAPublicKey]:
    """A service account's JSON with a fresh RSA key, and the public key that checks it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "gateway@proj-1.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return info, key.public_key()


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- AWS event-stream frames, written from the format's description (not botocore's code) ---


def _header(name: str, value: str) -> bytes:
    raw, data = name.encode(), value.encode()
    return bytes([len(raw)]) + raw + b"\x07" + struct.pack(">H", len(data)) + data


def frame(headers: dict[str, str], payload: bytes, *, corrupt: bool = False) -> bytes:
    """One event-stream message: prelude (lengths and their CRC), headers, payload, CRC."""
    head = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    crc = zlib.crc32(message) ^ (1 if corrupt else 0)
    return message + struct.pack(">I", crc)


def event(name: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps({**body, "p": "abcdefghij"}).encode()  # Bedrock pads with "p"
    headers = {":message-type": "event", ":event-type": name, ":content-type": "application/json"}
    return frame(headers, payload)


def exception(name: str, message: str) -> bytes:
    headers = {":message-type": "exception", ":exception-type": name}
    return frame(headers, json.dumps({"message": message}).encode())


def claude_chunk(event_json: dict[str, Any]) -> bytes:
    data = base64.b64encode(json.dumps(event_json, separators=(",", ":")).encode()).decode()
    return event("chunk", {"bytes": data})


def claude_events(text: list[str], tool: bool = False) -> list[dict[str, Any]]:
    """Anthropic's events for an answer of `text` deltas (and a tool call)."""
    start = {"type": "message", "role": "assistant", "model": "claude-up", "content": []}
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {**start, "usage": {"input_tokens": 7, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in text
    ]
    events.append({"type": "content_block_stop", "index": 0})
    stop = "end_turn"
    if tool:
        stop = "tool_use"
        events += [
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {},
                },
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Par'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'is"}'},
            },
            {"type": "content_block_stop", "index": 1},
        ]
    events += [
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]
    return events


def claude_sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {each['type']}\ndata: {json.dumps(each, separators=(',', ':'))}\n\n".encode()
        for each in events
    )


# --- the fake ---


@dataclass
class Request:
    path: str  # as sent, percent-encoding kept
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CloudFake:
    public_key: rsa.RSAPublicKey | None = None
    token_lifetime: int = 3600
    revoked: bool = False  # the token endpoint refuses the service account
    seen: list[Request] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # issued token -> expiry
    issued: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    token_issued: asyncio.Event = field(default_factory=asyncio.Event)
    bedrock_body: list[bytes] = field(default_factory=list)  # the next Bedrock stream's pieces
    bedrock_json: bytes = b""  # the next non-streamed Bedrock answer
    vertex_sse: bytes = b""
    azure_sse: bytes = b""
    gateway: Any = None  # the gateway app under test, for its state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await answered_lifespan(scope, receive, send):
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = Request(
            raw_path.decode(), scope["query_string"].decode(), headers, await read_body(receive)
        )
        self.seen.append(request)
        path = request.path
        if path == "/token":
            status, kind, body = self._token(request)
        elif path.startswith("/v1/projects/"):
            status, kind, body = self._vertex(request)
        elif path.startswith("/openai/"):
            status, kind, body = self._azure(request)
        elif path.startswith("/model/"):
            status, kind, body = self._bedrock(request)
        else:
            status, kind, body = 404, "application/json", [b'{"message": "no such path"}']
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind.encode())],
            }
        )
        for piece in body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    # Google's token endpoint: the JWT-bearer grant of a service account.
    def _token(self, request: Request) -> tuple[int, str, list[bytes]]:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        head, claims_b64, signature = form["assertion"].split(".")
        assert self.public_key is not None
        self.public_key.verify(  # raises on a bad signature: the test fails loudly
            _b64url(signature),
            f"{head}.{claims_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        claims = json.loads(_b64url(claims_b64))
        assert json.loads(_b64url(head))["alg"] == "RS256"
        assert claims["iss"] == "gateway@proj-1.iam.gserviceaccount.com"
        assert claims["aud"].endswith("/token")
        assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"]
        assert claims["exp"] > time.time()
        if self.revoked:
            error = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return 400, "application/json", [json.dumps(error).encode()]
        token = f"ya29.fake-{len(self.issued)}-{secrets.token_urlsafe(16)}"
        self.tokens[token] = time.time() + self.token_lifetime
        self.issued.append(token)
        self.token_issued.set()
        answer = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return 200, "application/json", [json.dumps(answer).encode()]

    def _vertex(self, request: Request) -> tuple[int, str, list[bytes]]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0) <= time.time():
            error = {
                "error": {
                    "code": 401,
                    "message": "invalid credentials",
                    "status": "UNAUTHENTICATED",
                }
            }
            return 401, "application/json", [json.dumps(error).encode()]
        prefix = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/"
        assert request.path.startswith(prefix), request.path
        publisher, _, rest = request.path.removeprefix(prefix).partition("/models/")
        model, _, method = unquote(rest).partition(":")
        body = request.json()
        if publisher == "anthropic":
            assert method == "streamRawPredict", method
            assert body["anthropic_version"] == "vertex-2023-10-16"
            assert "model" not in body
            assert model.startswith("claude")
        else:
            assert publisher == "google"
            assert method == "streamGenerateContent"
            assert request.query == "alt=sse"
            assert "contents" in body
        return 200, "text/event-stream", [self.vertex_sse]

    def _azure(self, request: Request) -> tuple[int, str, list[bytes]]:
        auth = request.headers.get("api-key") or request.headers.get("authorization", "")
        if auth not in (AZURE_KEY, "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-canary"):
            error = {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key.",
                }
            }
            return 401, "application/json", [json.dumps(error).encode()]
        body = request.json()
        if request.path == "/openai/v1/chat/completions":
            assert body["model"] == "gpt-4o-up"
        else:
            assert request.path == "/openai/deployments/my-deployment/chat/completions"
            assert request.query == "api-version=2024-10-21"
        return 200, "text/event-stream", [self.azure_sse]

    def _bedrock(self, request: Request) -> tuple[int, str, list[bytes]]:
        if not self._signed(request):
            message = {
                "message": "The request signature we calculated does not match the signature you provided."
            }
            return 403, "application/json", [json.dumps(message).encode()]
        model, _, method = request.path.removeprefix("/model/").partition("/")
        model = unquote(model)
        body = request.json()
        if method in ("invoke-with-response-stream", "invoke"):
            assert body["anthropic_version"] == "bedrock-2023-05-31"
            assert "model" not in body and "stream" not in body
            assert "anthropic.claude" in model
        else:
            assert method == "converse-stream", method
            assert body["messages"][0]["content"][0]["text"]
        if method == "invoke":
            return 200, "application/json", [self.bedrock_json]
        return 200, "application/vnd.amazon.eventstream", self.bedrock_body

    def _signed(self, request: Request) -> bool:
        """Recompute the SigV4 signature from the same credentials, over what arrived."""
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return False
        parts = dict(part.strip().split("=", 1) for part in authorization[17:].split(","))
        scope = parts["Credential"].split("/")
        if scope[0] != AWS.access_key or scope[3:] != ["bedrock", "aws4_request"]:
            return False
        names = parts["SignedHeaders"].split(";")
        signed = AWSRequest(
            method="POST",
            url=f"http://{request.headers['host']}{request.path}",
            data=request.body,
            headers={name: request.headers[name] for name in names if name != "host"},
        )
        signed.context["timestamp"] = request.headers["x-amz-date"]
        signer = SigV4Auth(AWS, "bedrock", scope[2])
        expected = signer.signature(
            signer.string_to_sign(signed, signer.canonical_request(signed)), signed
        )
        self.signatures.append(parts["Signature"])
        return (
            secrets.compare_digest(expected, parts["Signature"])
            and request.headers.get("x-amz-security-token") == AWS.token
        )
