"""Time to first chunk, taken apart: where one request's time goes inside the gateway.

    python -m bench.timeline [--samples 300]

Runs the mock upstream and the load client on core 1 and, on core 0, the gateway as `gateway
serve` runs it (one worker, its default log level, a gateway key configured) with probes: the
stages of each request are stamped with `time.perf_counter_ns()` by wrappers put around the
functions that begin or end them, in the gateway's process only (nothing in `gateway/` knows
about this). Requests go one at a time on one kept-alive connection (concurrency 1, 20 ms
between the upstream's chunks, so the first chunk is an event of its own) to the native
`/v1/chat/completions` (the stages probed are that route's), as in the
benchmark's time-to-first-chunk phase. It prints the median and p90 of each stage's share,
from the request's first bytes reaching the gateway to its first chunk leaving it, beside
the client's own measure of the whole.

A wrapper costs about a microsecond; the stages are tens to hundreds of microseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import run as bench
from bench.loadgen import Target, sequential

KEY = "bench-timeline-key-0123456789"

# (stage, what marks its end): in the order a request meets them.
STAGES = [
    ("parse the request head (httptools) and schedule its task", "parsed"),
    ("start the request's task", "app"),
    ("the gateway's layer: record, route lookup", "endpoint"),
    ("key check", "key"),
    ("read and parse the body", "body"),
    ("choose the model's plan", "plan"),
    ("admit (limits), guard, open the relay", "admitted"),
    ("pooled upstream connection", "connected"),
    ("write the upstream request", "upstream_sent"),
    ("wait for the upstream's first bytes", "upstream_first_byte"),
    ("parse the upstream's head, wrap the response", "upstream_head"),
    ("wait for and read the first event", "first_event"),
    ("commit: the response, its headers, the first frames", "client_write"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--delay-ms", type=int, default=20, help="between the upstream's chunks (0: no idle)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: the probed gateway
    args = parser.parse_args()
    if args.serve:
        serve_probed(args.serve)
        return
    mock, mock_port, gw_port = bench.tool_harness()
    stamps = Path(tempfile.mkdtemp()) / "stamps.json"
    try:
        gateway = start_probed(mock_port, gw_port, stamps)
        try:
            client = bench.run_loop(measure(mock_port, gw_port, args.samples, args.delay_ms))
            gateway.send_signal(signal.SIGUSR1)
            while not stamps.exists():  # a file another process writes
                time.sleep(0.05)
        finally:
            bench.stop(gateway)
    finally:
        mock.terminate()
    report(json.loads(stamps.read_text()), client)


def start_probed(mock_port: int, gw_port: int, stamps: Path) -> subprocess.Popen[bytes]:
    config = bench.gateway_config(mock_port)
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    config.write_text(config.read_text() + f"[keys.bench]\nsha256 = '{digest}'\n")
    env = {**os.environ, "BENCH_TIMELINE_STAMPS": str(stamps)}
    command = [sys.executable, "-m", "bench.timeline", "--serve", f"{config}:{gw_port}"]
    log = open(os.devnull, "wb")  # noqa: SIM115  # the child's; closed with this process
    gateway = subprocess.Popen(bench.pinned(0, command), cwd=bench.ROOT, env=env, stderr=log)
    bench.wait_healthy(gw_port)
    return gateway


async def measure(
    mock_port: int, gw_port: int, samples: int, delay_ms: int
) -> dict[str, list[float]]:
    targets = {t.name: t for t in bench.targets(mock_port, gw_port, 4, delay_ms)}
    auth = f"authorization: Bearer {KEY}\r\n".encode()
    found = targets["direct"], targets["gateway /v1/chat/completions"]
    direct, through = (Target(**{**vars(t), "headers": auth}) for t in found)
    await sequential(through, 20)  # warm-up: connections, caches
    direct_results = await sequential(direct, samples)
    gateway_results = await sequential(through, samples)
    if bench.faults(direct_results) or bench.faults(gateway_results):
        raise SystemExit("errors or short streams")
    return {"direct": direct_results.ttfc, "gateway": gateway_results.ttfc}


def report(requests: list[dict[str, int]], client: dict[str, list[float]]) -> None:
    requests = [r for r in requests if all(mark in r for _, mark in STAGES)][20:]  # no warm-up
    fresh = sum("new_connection" in r for r in requests)
    print(f"requests on a new upstream connection: {fresh} of {len(requests)}")
    direct = statistics.median(client["direct"]) * 1000
    through = statistics.median(client["gateway"]) * 1000
    print(f"requests: {len(requests)}; client's time to first chunk, p50: direct {direct:.3f} ms,")
    print(f"through the gateway {through:.3f} ms (added {through - direct:+.3f} ms)\n")
    print("| stage | p50 us | p90 us |")
    print("|---|---|---|")
    previous, total = "received", []
    for name, mark in STAGES:
        spans = [(r[mark] - r[previous]) / 1000 for r in requests]
        print(f"| {name} | {statistics.median(spans):.0f} | {_p90(spans):.0f} |")
        previous = mark
    total = [(r["client_write"] - r["received"]) / 1000 for r in requests]
    print(
        f"| **first bytes in → first chunk out** | {statistics.median(total):.0f} "
        f"| {_p90(total):.0f} |"
    )


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


# ---- the probed gateway ------------------------------------------------------------------


class Stamps:
    """The stamps of each request, one dict per request, in arrival order."""

    def __init__(self) -> None:
        self.requests: list[dict[str, int]] = []

    def new(self) -> None:
        self.requests.append({"received": time.perf_counter_ns()})

    def mark(self, name: str) -> None:
        if self.requests and name not in self.requests[-1]:
            self.requests[-1][name] = time.perf_counter_ns()


def serve_probed(where: str) -> None:
    stamps = Stamps()
    install_probes(stamps)
    path = Path(os.environ["BENCH_TIMELINE_STAMPS"])
    # Asked for by the driver once the requests are done (SIGTERM's exit path is the gateway's).
    signal.signal(signal.SIGUSR1, lambda *_: path.write_text(json.dumps(stamps.requests)))
    bench.serve_gateway(where)


def install_probes(stamps: Stamps) -> None:
    import aiohttp.client_proto
    import aiohttp.client_reqrep
    import uvicorn.protocols.http.httptools_impl as uvicorn_http

    import gateway.api._serve
    import gateway.api.openai
    import gateway.auth
    import gateway.front
    import gateway.http_protocol
    import gateway.native.sse
    import gateway.providers._client

    protocol = gateway.http_protocol.HeadWithFirstChunk
    data_received = uvicorn_http.HttpToolsProtocol.data_received

    def received(self: Any, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            stamps.new()  # the first bytes of a new request on this connection
        data_received(self, data)

    protocol.data_received = received  # type: ignore[method-assign]
    _after(protocol, "on_headers_complete", stamps, "parsed")
    _before(uvicorn_http.RequestResponseCycle, "run_asgi", stamps, "app", is_async=True)
    _before(gateway.front.GatewayApp, "_call_direct", stamps, "endpoint", is_async=True)
    _after(gateway.auth.KeyRing, "identify", stamps, "key")
    _after(gateway.api.openai, "json_object", stamps, "body")
    _after(gateway.api.openai, "native_plan", stamps, "plan")
    _after(gateway.providers._client._Connector, "connect", stamps, "connected", is_async=True)
    _before(aiohttp.TCPConnector, "_create_connection", stamps, "new_connection", is_async=True)
    _after(aiohttp.client_reqrep.ClientRequest, "send", stamps, "upstream_sent", is_async=True)
    _after(
        gateway.providers._client.AiohttpTransport,
        "handle_async_request",
        stamps,
        "upstream_head",
        is_async=True,
    )
    _before(aiohttp.client_proto.ResponseHandler, "data_received", stamps, "upstream_first_byte")
    _before(gateway.api._serve, "StreamGuard", stamps, "admitted")
    feed = gateway.native.sse.RawEvents.feed

    def fed(self: Any, chunk: bytes) -> list[str]:
        events = feed(self, chunk)
        if events:
            stamps.mark("first_event")
        return events

    gateway.native.sse.RawEvents.feed = fed  # type: ignore[method-assign]
    _before(gateway.http_protocol._Prefixed, "write", stamps, "client_write")


def _before(owner: Any, name: str, stamps: Stamps, mark: str, *, is_async: bool = False) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    if is_async:

        async def probe_async(*args: Any, **kwargs: Any) -> Any:
            stamps.mark(mark)
            return await original(*args, **kwargs)

        setattr(owner, name, probe_async)
        return

    def probe(*args: Any, **kwargs: Any) -> Any:
        stamps.mark(mark)
        return original(*args, **kwargs)

    setattr(owner, name, probe)


def _after(
    owner: Any,
    name: str,
    stamps: Stamps,
    mark: str,
    *,
    is_async: bool = False,
    module: bool = False,
) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    if is_async:

        async def probe_async(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            stamps.mark(mark)
            return result

        setattr(owner, name, probe_async)
        return

    def probe(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        stamps.mark(mark)
        return result

    setattr(owner, name, probe)


if __name__ == "__main__":
    main()
