"""Shared fixtures: a clean environment, settings and app factories, wire captures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.providers.base import Provider
from gateway.settings import Settings, load_settings
from tests.ci import SkipPolicy, allowed_skips, in_ci, require

pytest_plugins = ["pytester"]  # tests/test_ci.py runs pytest on small suites

WIRE = Path(__file__).parent / "wire"
CANARY_KEY = "sk-canary-0123456789abcdefSECRET"


def pytest_configure(config: pytest.Config) -> None:
    # In CI a skip is a failure unless the test is on tests/allowed-skips.txt.
    config.pluginmanager.register(SkipPolicy(allowed_skips(), enforce=in_ci()), "skip-policy")


def isolate(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """No GATEWAY_* or provider keys from the developer's shell; no config/ from the repo:
    work in `directory` (where `settings_from` writes its file)."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(directory)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    isolate(monkeypatch, tmp_path)
    yield


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`clean_env` for a module-scoped fixture (set up before any test's own `clean_env`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp("module"))
        yield


# The Redis tests are about what the gateway does with Redis, not about its 0.25 s default
# time-out: on a loaded machine a healthy local Redis can take longer to answer, which the
# gateway rightly treats as an outage (503). The tests that need Redis to fail make it fail
# outright (a closed port, a killed server, a refused command).
REDIS_SLACK = "redis_timeout_s = 2\n"


def wire(name: str) -> bytes:
    return (WIRE / name).read_bytes()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def settings_from(toml: str = "", **overrides: Any) -> Settings:
    """Settings from a TOML snippet (written to a temporary file) plus overrides."""
    if not toml:
        return load_settings(**overrides)
    path = Path.cwd() / "test-gateway.toml"
    path.write_text(toml)
    return load_settings(path, **overrides)


FAST_FAKE = """
[providers.fake]
type = "fake"
chunk_delay_ms = 0
"""


@asynccontextmanager
async def app_client(
    settings: Settings, providers: dict[str, Provider] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """An in-process client (everything before the commit point; it buffers bodies)."""
    app = create_app(settings, providers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, app


AppClient = Callable[..., Any]


class ManualClock:
    """A wall clock that moves only when the test moves it: the limits' one-minute windows
    never roll over in the middle of a test. It starts 30 s into a minute."""

    def __init__(self, now: float = 1_800_000_030.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real, throwaway redis-server on a free port (without one: skip locally, fail in CI)."""
    import socket
    import subprocess
    import time

    binary = require("redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # until it accepts connections (a condition, with a guard)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The throwaway Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server
