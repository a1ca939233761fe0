"""The `gateway` command as a user runs it: real processes, real pipes, a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.auth import hash_key
from gateway.providers.fake import load_story
from tests.conftest import CANARY_KEY, write_config
from tests.e2e.process import gateway_process

pytestmark = pytest.mark.e2e

STORY = load_story(None)
FAST = "[providers.fake]\ntype='fake'\nchunk_delay_ms=0\n"


async def gateway_cli(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`python -m gateway ARGS…`: exit status, stdout, stderr."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await cli.communicate(stdin)
    assert cli.returncode is not None
    return cli.returncode, out.decode(), err.decode()


async def test_no_command_says_what_to_do_and_version_and_help_say_enough() -> None:
    status, _, err = await gateway_cli()
    assert status == 2
    assert "gateway serve" in err
    assert {"serve", "stream", "check-config", "hash-key"} <= set(err.split())
    status, out, _ = await gateway_cli("--version")
    assert (status, out.strip()) == (0, f"gateway {__version__}")
    status, out, _ = await gateway_cli("serve", "--help")
    assert status == 0
    for promise in ("127.0.0.1", "8000", "$GATEWAY_CONFIG", "--workers", "--log-format"):
        assert promise in out


async def test_check_config_prints_everything_resolved_with_secrets_masked(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        "redis_url = 'redis://:redis-password-123@cache:6379/0'\n"
        + FAST
        + "[providers.openai]\ntype='openai'\napi_key_env='OPENAI_API_KEY'\n"
        + "[providers.gemini]\ntype='gemini'\napi_key_env='GEMINI_API_KEY'\n"
        + f"[keys.frontend]\nsha256='{hash_key(CANARY_KEY)}'\nrpm=60\n"
        + "[cors]\nallow_origins=['http://localhost:5173']\n",
    )
    env = {"OPENAI_API_KEY": CANARY_KEY, "GATEWAY_SHUTDOWN_GRACE_S": "12"}
    status, out, err = await gateway_cli("check-config", "--config", str(path), env=env)
    assert status == 0, err
    assert CANARY_KEY not in out and "redis-password-123" not in out
    assert hash_key(CANARY_KEY) not in out
    assert f"# configuration: {path}" in out
    assert "# providers without a key: gemini (set GEMINI_API_KEY)" in out
    shown = json.loads(out[out.index("{") :])
    assert shown["keys"]["frontend"] == {
        "sha256": hash_key(CANARY_KEY)[:8] + "…",
        "models": None,
        "rpm": 60,
        "tpm": None,
        "max_concurrent_streams": None,
        "budget": None,
        "budget_period": "month",
    }
    assert shown["cors"]["allow_origins"] == ["http://localhost:5173"]
    assert shown["redis_url"] == "redis://:*****@cache:6379/0"
    assert shown["shutdown_grace_s"] == 12
    assert shown["providers"]["openai"]["api_key"] == "**********"
    assert shown["providers"]["openai"]["connect_timeout"] == 5
    assert shown["max_body_bytes"] == 32 * 1024 * 1024


async def test_check_config_reports_every_problem_each_blamed_on_its_source(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        "default_model = 'story'\n"
        "[models.a]\nprovider='nope'\n"
        "[models.b]\nprovider='fake'\nfallbacks=['ghost']\n",
    )
    env = {"GATEWAY_DEFAULT_MODEL": "missing", "GATEWAY_PROT": "9000"}
    status, out, err = await gateway_cli("check-config", "--config", str(path), env=env)
    assert status == 1
    assert out == ""
    assert f"{path}: models.a.provider: no provider named 'nope'" in err
    assert f"{path}: models.b.fallbacks: 'ghost' is not a configured model" in err
    assert (
        "environment variable GATEWAY_DEFAULT_MODEL: default_model: 'missing' is not a "
        "configured model"
    ) in err
    assert "GATEWAY_PROT matches no setting and is ignored" in err


async def test_check_config_into_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has its lines
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "check-config",
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    _, err = await cli.communicate()
    assert "Traceback" not in err.decode()
    assert "BrokenPipeError" not in err.decode()
    assert cli.returncode == 1


async def test_serve_logs_its_configuration_once_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path, FAST + "[providers.openai]\ntype='openai'\napi_key_env='OPENAI_API_KEY'\n"
    )
    monkeypatch.setenv("GATEWAY_PORTT", "1")  # a typo of GATEWAY_PORT
    async with gateway_process(config=path) as gateway:
        pass
    logged = "\n".join(gateway.log)
    assert f"configuration {path}; models: story (default story)" in logged
    assert (
        "providers without a key (their models answer 404): openai (set OPENAI_API_KEY)" in logged
    )
    assert "ignored, matching no setting: GATEWAY_PORTT" in logged


async def test_stream_cli_key_from_environment_prompt_from_stdin_and_options(
    tmp_path: Path,
) -> None:
    key = "gw-cli-key-0123456789"
    path = write_config(tmp_path, FAST + f"[keys.cli]\nsha256='{hash_key(key)}'\n")
    async with gateway_process(config=path) as gateway:
        url = ("--url", gateway.url)
        refused = await gateway_cli("stream", *url, "hi")
        text = await gateway_cli("stream", *url, "-", stdin=b"hi", env={"GATEWAY_KEY": key})
        sse = await gateway_cli(
            "stream",
            *url,
            "--format",
            "sse",
            "--max-tokens",
            "2",
            "--system",
            "be brief",
            "hi",
            env={"GATEWAY_KEY": key},
        )
        ndjson = await gateway_cli(
            "stream", *url, "--format", "ndjson", "--model", "nope", "hi", env={"GATEWAY_KEY": key}
        )
    assert refused[0] == 1 and "HTTP 401" in refused[2]
    assert text == (0, STORY, "")
    status, out, _ = sse
    assert status == 0
    assert out.startswith('data: "Rick: "\nid: ')
    assert '"finish_reason":"length"' in out
    assert ndjson[0] == 1 and "HTTP 404" in ndjson[2]
    assert key not in "\n".join(gateway.log)


async def test_stream_cli_names_the_url_it_cannot_reach() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{unused.getsockname()[1]}"  # bound, not listening
        status, _, err = await gateway_cli("stream", "--url", address, "hi")
    assert status == 1
    assert f"cannot reach the gateway at {address}" in err
    assert "Traceback" not in err
