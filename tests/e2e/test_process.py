"""The gateway as a user runs it: a real process, a real signal, the real CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx
import pytest

from gateway.providers.fake import load_story
from tests.conftest import CANARY_KEY, write_config
from tests.e2e.process import gateway_process
from tests.e2e.servers import Gate, Reply, UpstreamStub, serve

pytestmark = pytest.mark.e2e

STORY = load_story(None)
# After a graceful shutdown uvicorn re-raises the signal it caught, so the process ends with
# the conventional "terminated by SIGTERM" status (143 in a shell).
EXITED_ON_SIGTERM = (0, -signal.SIGTERM)


def config(tmp_path: Path, delay_ms: int, grace_s: float, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"shutdown_grace_s = {grace_s}\n[providers.fake]\ntype='fake'\nchunk_delay_ms={delay_ms}\n"
        "[providers.openai]\ntype='openai'\napi_key_env='OPENAI_API_KEY'\n" + extra,
    )


async def run_cli(*args: str) -> tuple[int, bytes, bytes]:
    """`python -m gateway ARGS…`: exit status, stdout, stderr."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await cli.communicate()
    assert cli.returncode is not None
    return cli.returncode, out, err


async def test_serve_and_the_stream_cli_print_the_story(tmp_path: Path) -> None:
    async with gateway_process(config=config(tmp_path, 0, 5)) as gateway:
        status, out, _ = await run_cli("stream", "--url", gateway.url, "hi")
    assert status == 0
    assert out.decode() == STORY


async def test_stream_cli_reports_errors_and_truncation(tmp_path: Path) -> None:
    extra = "[models.flaky]\nprovider='fake'\nparams={fail_after_chunks=2}\n"
    async with gateway_process(config=config(tmp_path, 0, 5, extra)) as gateway:
        for model, message in (("nope", b"HTTP 404"), ("flaky", b"ended before it was complete")):
            status, _, err = await run_cli("stream", "--url", gateway.url, "--model", model, "hi")
            assert status == 1
            assert message in err


def chunk(text: str) -> bytes:
    """One OpenAI chat.completion.chunk SSE event carrying `text`."""
    event = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(event)}\n\n".encode()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_keeps_listening_with_503_while_in_flight_streams_finish(
    tmp_path: Path, workers: str
) -> None:
    gate = Gate()
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    stub = UpstreamStub(Reply(body=[chunk("first "), gate, chunk("last"), end]))
    async with serve(stub) as upstream:
        extra = f"[providers.stub]\ntype='openai'\nbase_url='{upstream}'\napi_key='test'\n"
        path = config(tmp_path, 0, 30, extra)
        async with (
            gateway_process("--workers", workers, config=path) as gateway,
            httpx.AsyncClient(base_url=gateway.url) as http,
            http.stream("GET", "/stream", params={"prompt": "a", "model": "stub/m"}) as response,
        ):
            reads = response.aiter_text()
            received = await anext(reads)
            gateway.process.send_signal(signal.SIGTERM)
            await gateway.wait_for_log("draining:", count=int(workers))
            if workers == "2":
                # The worker without a stream drains at once and exits; a connection it
                # accepted in its last moment would be closed unanswered, so wait until it
                # is gone: from then on the draining worker accepts every connection.
                await gateway.wait_for_log("Finished server process")
            # New connections are still accepted, and answered: the replica is leaving.
            async with httpx.AsyncClient(base_url=gateway.url) as late:
                ready = await late.get("/readyz")
                refused = await late.get("/stream", params={"prompt": "a"})
                alive = await late.get("/healthz")
            assert ready.status_code == 503
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "unavailable"
            assert alive.status_code == 200
            assert gateway.process.returncode is None
            gate.open()
            received += "".join([text async for text in reads])
        assert received == "first last"
        assert await gateway.exit_code() in EXITED_ON_SIGTERM
    assert "drained: stopping the server" in "\n".join(gateway.log)


async def test_sigterm_ends_streams_in_band_when_the_grace_runs_out(tmp_path: Path) -> None:
    async with (
        gateway_process(config=config(tmp_path, 200, 0.3)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
        http.stream("GET", "/stream", params={"prompt": "hi", "format": "sse"}) as response,
    ):
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        gateway.process.send_signal(signal.SIGTERM)
        events = [line async for line in lines]
    assert "event: error" in events
    error = json.loads(events[events.index("event: error") + 1].removeprefix("data: "))
    assert error["type"] == "unavailable"
    assert "event: done" not in events
    assert await gateway.exit_code() in EXITED_ON_SIGTERM


async def test_invalid_config_fails_at_start_up_with_a_message(tmp_path: Path) -> None:
    bad = write_config(tmp_path, "[providers.fake]\ntype='fake'\nchunk_dealy_ms=1\n")
    status, _, err = await run_cli("serve", "--config", str(bad))
    assert status == 1
    assert f"{bad}: providers.fake.chunk_dealy_ms: Extra inputs are not permitted" in err.decode()


async def test_missing_provider_key_is_a_clear_404_and_never_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = "[models.gpt]\nprovider='openai'\n"
    async with gateway_process(config=config(tmp_path, 0, 5, extra)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            response = await http.post("/stream", json={"prompt": "a", "model": "gpt"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_unavailable"
    assert "OPENAI_API_KEY" in response.json()["error"]["message"]
    assert CANARY_KEY not in "\n".join(gateway.log)
