"""The naive relay a team writes in an afternoon: FastAPI + httpx, stock settings.

A peer in `make bench-peers`, so that the gateway's numbers can be compared with the simplest
thing that works. It forwards the body and relays the upstream's bytes as they come.

Run: NAIVE_UPSTREAM=http://127.0.0.1:PORT/v1 uvicorn bench.naive_relay:app --port N
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

UPSTREAM = os.environ.get("NAIVE_UPSTREAM", "http://127.0.0.1:8001/v1")
client = httpx.AsyncClient(
    timeout=60, limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000)
)
app = FastAPI()


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> StreamingResponse:
    upstream = await client.send(
        client.build_request(
            "POST",
            f"{UPSTREAM}/chat/completions",
            content=await request.body(),
            headers={"content-type": "application/json"},
        ),
        stream=True,
    )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingResponse(relay(), upstream.status_code, media_type="text/event-stream")
