"""The cloud vendors' per-request and per-event costs (SPEC §5.2), pure CPU in this process:
a SigV4 signature over a 2 KB body (per request), and Bedrock's event-stream frames decoded
from 1,400-byte reads (per event), Converse frames and Claude's re-framed chunks, next to the
SSE decoder's cost for the same number of events.

    python -m bench.cloud [--rounds 7] [--events 1000]

Prints the median of the rounds in microseconds.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable

import httpx
import orjson
from botocore.credentials import ReadOnlyCredentials

from gateway.providers._eventstream import EventStreamDecoder
from gateway.providers._sse import SSEDecoder
from gateway.providers.auth import Token
from gateway.providers.auth.aws import SigV4
from gateway.providers.bedrock import ClaudeEvents
from tests.e2e.cloud_fakes import event

URL = httpx.URL(
    "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse-stream"
)
READ = 1400


def median_us(run: Callable[[], None], per: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / per * 1e6)
    return statistics.median(times)


def feed_all(decoder: EventStreamDecoder | ClaudeEvents | SSEDecoder, body: bytes) -> None:
    for offset in range(0, len(body), READ):
        decoder.feed(body[offset : offset + READ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    n = args.events

    signer = SigV4("us-east-1", None)
    credentials = ReadOnlyCredentials("AKIAIOSFODNN7EXAMPLE", "secret", "token")
    signer.tokens._token = Token(credentials, None)
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "x" * 2000}]}]})

    def sign() -> None:
        for _ in range(n):
            signer.headers("POST", URL, body)

    delta = {"contentBlockIndex": 0, "delta": {"text": "word "}}
    converse = b"".join(event("contentBlockDelta", delta) for _ in range(n))
    anthropic = {"type": "content_block_delta", "index": 0, "delta": {"text": "word "}}
    chunk = event("chunk", {"bytes": base64.b64encode(orjson.dumps(anthropic)).decode()})
    claude = chunk * n
    sse = b'data: {"choices":[{"index":0,"delta":{"content":"word "}}]}\n\n' * n

    rows = {
        "SigV4 signature, 2 KB body (per request)": sign,
        "Converse frames decoded (per event)": lambda: feed_all(
            EventStreamDecoder(1 << 20), converse
        ),
        "Claude chunks re-framed as SSE (per event)": lambda: feed_all(
            ClaudeEvents(1 << 20, raw=True), claude
        ),
        "SSE events decoded, for comparison (per event)": lambda: feed_all(SSEDecoder(), sse),
    }
    for name, run in rows.items():
        print(f"{name}: {median_us(run, n, args.rounds):.1f} us")


if __name__ == "__main__":
    main()
