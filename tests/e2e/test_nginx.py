"""The compose proxy's nginx.conf, run by a real nginx in front of a real gateway (SPEC §8).

The configuration is rendered as the nginx image renders its templates (${GATEWAY_PORT}
filled in), with only what a test must change: the listening port, the gateway's address
(Docker's DNS name becomes 127.0.0.1) and the log directory. Needs Debian's `nginx`, which
`.ci/run` installs; without it these tests fail, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.providers.fake import load_story
from tests.ci import require
from tests.conftest import FAST_FAKE, settings_from
from tests.e2e.conftest import GUARD_S, GatedProvider, wait_for
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STORY = load_story(None)
SECRET_PROMPT = "secret-prompt-canary-42"


def nginx_binary() -> str:
    """Debian's nginx (skips locally, fails in CI, if absent: .ci/required-tools)."""
    return NGINX if Path(NGINX).is_file() else require("nginx")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(directory: Path, gateway_port: int, listen_port: int) -> Path:
    """The shipped template, filled in; wrapped in a main configuration of its own."""
    site = (ROOT / "config" / "nginx.conf").read_text()
    site = site.replace("${GATEWAY_PORT}", str(gateway_port))
    site = site.replace("gateway:", "127.0.0.1:")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    site = site.replace("/var/log/nginx/", f"{directory}/")
    (directory / "default.conf").write_text(site)
    main = directory / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {directory}/nginx.pid;\nerror_log {directory}/main-error.log;\n"
        + "worker_processes 1;\nevents {}\nhttp {\n"
        + "".join(
            f"  {kind}_temp_path {directory}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {directory}/default.conf;\n}}\n"
    )
    return main


@dataclass
class Proxy:
    url: str
    logs: Path

    def access_log(self) -> str:
        return (self.logs / "access.log").read_text()


@asynccontextmanager
async def nginx_in_front_of(gateway_port: int, directory: Path) -> AsyncIterator[Proxy]:
    port = free_port()
    main = render(directory, gateway_port, port)
    process = await asyncio.create_subprocess_exec(
        nginx_binary(), "-p", str(directory), "-c", str(main), "-g", "daemon off;"
    )
    try:
        async with asyncio.timeout(GUARD_S):
            while True:  # a condition, polled: nginx says nothing once it listens
                assert process.returncode is None, (directory / "main-error.log").read_text()
                with suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.01)
        yield Proxy(f"http://127.0.0.1:{port}", directory)
    finally:
        process.terminate()
        await process.wait()


async def raw_get(proxy: Proxy, target: str) -> bytes:
    """A request line longer than any HTTP client library will send."""
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(GUARD_S):
        answer = await reader.read()
    writer.close()
    return answer


def test_the_shipped_configuration_passes_nginx_t(tmp_path: Path) -> None:
    import subprocess

    main = render(tmp_path, 8000, free_port())
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


async def test_streams_pass_unbuffered_and_prompts_stay_out_of_the_logs(tmp_path: Path) -> None:
    provider = GatedProvider()
    # A small body limit, so that the 413 below takes a small body to provoke.
    app = create_app(settings_from(FAST_FAKE, max_body_bytes=1024 * 1024), {"fake": provider})
    async with serve(app) as gateway:
        port = int(gateway.rsplit(":", 1)[1])
        async with (
            nginx_in_front_of(port, tmp_path) as proxy,
            httpx.AsyncClient(base_url=proxy.url) as http,
        ):
            params = {"prompt": SECRET_PROMPT}
            headers = {"X-Request-ID": "client-id-123"}
            provider.gates[0].set()  # the gateway answers with its first delta
            async with http.stream("GET", "/stream", params=params, headers=headers) as response:
                chunks = response.aiter_raw()
                # The first delta arrives while the upstream still holds the second: no buffer.
                assert await anext(chunks) == b"one "
                provider.open_all()
                rest = b"".join([chunk async for chunk in chunks])
            assert rest == b"two three four "
            assert response.headers["x-request-id"] == "client-id-123"
            too_large = await http.post(
                "/stream", content=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "json"}
            )
    await wait_for(provider.closed)
    assert too_large.status_code == 413, (too_large.text, (tmp_path / "error.log").read_text())
    assert too_large.json()["error"]["type"] == "request_too_large"  # the gateway's, not HTML
    log = proxy.access_log()
    assert '"GET /stream HTTP/1.1" 200' in log
    assert "rid=client-id-123" in log
    assert SECRET_PROMPT not in log
    assert SECRET_PROMPT not in (tmp_path / "error.log").read_text()


async def test_nginx_answers_its_own_errors_in_the_gateways_envelope(tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there: the gateway is down
    async with (
        nginx_in_front_of(nobody, tmp_path) as proxy,
        httpx.AsyncClient(base_url=proxy.url) as http,
    ):
        down = await http.get("/stream", params={"prompt": SECRET_PROMPT})
        huge = await raw_get(proxy, "/stream?prompt=" + "x" * 70_000)  # over any buffer
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/json"
    assert down.headers["retry-after"] == "1"
    error = down.json()["error"]
    assert error["type"] == "unavailable"
    assert len(error["request_id"]) == 32
    assert huge.startswith(b"HTTP/1.1 413 ")
    assert b'{"error":{"type":"request_too_large"' in huge
    assert SECRET_PROMPT not in proxy.access_log()
