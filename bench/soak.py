"""`make soak`: sustained mixed traffic with faults, to prove that the gateway levels off.

    make soak ARGS="--duration 600 [--redis] [--concurrency 32]"

The gateway runs as users run it (`gateway serve`, one worker) in front of the benchmark's mock
upstream (bench/mock_upstream.py), with a key whose limits are counted (so the limiter works
for every request) and a small retention budget (`resume_retained_max_bytes`), so that the
steady state comes within minutes. Closed-loop clients (bench/loadgen.py's connection) send, as
fast as the machine allows, a mix over every streaming route (/v1/chat/completions,
/v1/messages, /stream SSE plain and resumable, /ui/chat, /ui/completion):

- clients that read the whole stream, and slow ones that pause after every read;
- clients that hang up after the first event, and clients that hang up and reconnect
  (`Last-Event-ID`, `GET /stream/{id}?after=`, `GET /ui/chat/{id}/stream`), whose replay is
  checked to continue exactly after the last event they got;
- an upstream that resets the connection halfway through some streams (an in-band error);
- with `--redis`, a redis-server that is killed and started again halfway through.

Every few seconds it samples the gateway's RSS, open descriptors and asyncio tasks (the
`gateway_asyncio_tasks` gauge), its streams in flight and retained bytes, and Redis's keys and
`used_memory`, into a CSV, and draws RSS, descriptors and Redis keys over time as an SVG (no
plotting dependency). At the end, once the gateway is idle again, it checks:

- no 5xx, and every stream ended with its terminator or its in-band error (or was hung up);
- the client's counts per route and outcome equal the gateway's `gateway_requests_total`, and
  its reconnections equal `gateway_reconnections_total`;
- no stream left in flight, descriptors (beyond the Redis client's pool) and tasks back to
  what they were at rest after the warm-up;
- RSS levels off: the last third's maximum within 5 % of the first third's, and everything
  under the budget plus the process's base (the peak RSS of a gateway that retains nothing,
  under the same traffic for `--base-seconds` first).

The result (JSON) and the CSV go to bench/results/; the SVG to docs/ (with `--svg`).
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import _header, _Stream
from bench.run import ROOT, Process, free_port, start_mock, wait_healthy
from gateway.auth import hash_key

RESULTS = ROOT / "bench" / "results"
KEY = "soak-key-0123456789abcdef"
AUTH = b"authorization: Bearer %b\r\n" % KEY.encode()
# The soak's resume_retained_max_bytes (the default is 256 MiB): small enough that retention
# fills it within the first minutes at the rate a shared two-core machine reaches, so that the
# run shows the steady state rather than the approach to it.
BUDGET_MIB = 8
GUARD_S = 120  # the longest any one stream may take before it counts as stalled


# ---- what the clients send -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    path: str  # as requested (a query string included)
    done: bytes  # in the tail of a complete stream
    error: bytes  # in the tail of a stream that ended with the in-band error
    events_extra: int  # frames besides one per delta

    @property
    def metric_route(self) -> str:
        return self.path.split("?")[0]


ROUTES = {
    "chat": Route("chat", "/v1/chat/completions", b"data: [DONE]", b'data: {"error":', 3),
    "messages": Route("messages", "/v1/messages", b"event: message_stop", b'"type":"error"', 5),
    "stream": Route("stream", "/stream?format=sse", b"event: done", b"event: error", 1),
    "resumable": Route("resumable", "/stream?format=sse", b"event: done", b"event: error", 2),
    "ui_chat": Route("ui_chat", "/ui/chat", b"data: [DONE]", b'"type":"error"', 7),
    "ui_completion": Route(
        "ui_completion", "/ui/completion", b"data: [DONE]", b'"type":"error"', 7
    ),
}
RESUMABLE = ("resumable", "ui_chat")
# What a client does with its stream, and how often (weights).
BEHAVIOURS = {"read": 60, "slow": 10, "hangup": 15, "reconnect": 15}
RESET_SHARE = 0.05  # streams whose upstream resets halfway
SHORT, LONG = (32, 0), (100, 10)  # (chunks, ms between them): quick answers, and ~1 s ones


def body(route: str, model: str, chat_id: str) -> bytes:
    messages = [{"role": "user", "content": "hi"}]
    if route == "chat":
        data: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    elif route == "messages":
        data = {"model": model, "max_tokens": 1024, "messages": messages, "stream": True}
    elif route in ("stream", "resumable"):
        data = {"model": model, "prompt": "hi", "resumable": route == "resumable"}
    elif route == "ui_chat":
        part = {"type": "text", "text": "hi"}
        data = {
            "model": model,
            "id": chat_id,
            "messages": [{"id": "m", "role": "user", "parts": [part]}],
        }
    else:
        data = {"model": model, "prompt": "hi"}
    return json.dumps(data).encode()


def post(path: str, payload: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %b HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"accept: text/event-stream\r\n%b%bcontent-length: %d\r\n\r\n%b"
        % (path.encode(), AUTH, extra, len(payload), payload)
    )


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %b HTTP/1.1\r\nhost: 127.0.0.1\r\n%b%b\r\n" % (path.encode(), AUTH, extra)


class SoakStream(_Stream):
    """The load generator's connection, keeping the whole body when asked (to check a replay's
    ids) and optionally reading slowly (a pause after every read)."""

    keep = False
    slow_s = 0.0

    def start(self, request: bytes) -> asyncio.Future[None]:
        self.body = bytearray()
        self.end = b""
        return super().start(request)

    def _payload(self, payload: bytes) -> None:
        super()._payload(payload)
        self.end = (self.end + payload)[-600:]  # an in-band error event can be long
        if self.keep:
            self.body += payload

    def data_received(self, data: bytes) -> None:
        if not self.in_body and self._bodiless(data):
            return
        super().data_received(data)
        if self.slow_s and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(self.slow_s, self._resume)

    def _bodiless(self, data: bytes) -> bool:
        """A response with no chunked body (a 204, or an error with a content-length): done
        once its head and body are in (the load generator's parser reads chunked bodies)."""
        buffer = self.buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or b"transfer-encoding: chunked" in buffer[:end].lower():
            return False
        head = buffer[:end].lower()
        found = re.search(rb"content-length:\s*(\d+)", head)
        length = int(found.group(1)) if found else 0
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return True
        self.status, self.head = int(buffer[9:12]), buffer[:end]
        self.end = self.tail = buffer[end + 4 : end + 4 + length][-600:]
        self.buffer = b""
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
        return True

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


async def connect(port: int) -> SoakStream:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(SoakStream, "127.0.0.1", port)
    return protocol


# ---- counting --------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw. `requests` by (metric route, outcome) with the gateway's outcome
    names: complete, error (the in-band error), client_disconnect, rejected (a 204), or
    status_<n> for any other status."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    reconnections: Counter[str] = field(default_factory=Counter)  # resumed, nothing
    ui_resume_nothing: int = 0  # GET /ui/chat/{id}/stream answered 204 (not in the metrics)
    faults: list[str] = field(default_factory=list)
    streams: int = 0

    def fault(self, text: str) -> None:
        if len(self.faults) < 50:
            self.faults.append(text)
        else:
            self.faults[-1] = f"... and more ({text})"

    def five_xx(self) -> int:
        return sum(n for (_, outcome), n in self.requests.items() if outcome.startswith("status_5"))


def classify(stream: SoakStream, route: Route) -> str:
    if stream.status == 204:
        return "rejected"
    if stream.status != 200:
        return f"status_{stream.status}"
    if route.error in stream.end:
        return "error"
    if route.done in stream.end:
        return "complete"
    return "unterminated"


_IDS = re.compile(rb"\nid: [A-Za-z0-9_\-]+:(\d+)\n")


def check_replay(stream: SoakStream, after: int, tally: Tally) -> None:
    """A resumed /stream sends every event after `after`, in order, exactly once."""
    ids = [int(n) for n in _IDS.findall(b"\n" + bytes(stream.body))]
    if ids != list(range(after + 1, after + 1 + len(ids))) or not ids:
        tally.fault(f"replay after {after} sent ids {ids[:5]}...{ids[-3:]}")


# ---- one client ------------------------------------------------------------------------------


class Client:
    def __init__(self, port: int, tally: Tally, rng: random.Random) -> None:
        self.port, self.tally, self.rng = port, tally, rng
        self.conn: SoakStream | None = None
        self.chats = 0

    async def stream(self, request: bytes, route: Route, keep: bool = False, slow: float = 0):
        """Send on the kept-alive connection (a new one if needed); the finished stream."""
        if self.conn is None or self.conn.transport is None or self.conn.transport.is_closing():
            self.conn = await connect(self.port)
        conn = self.conn
        conn.keep, conn.slow_s = keep, slow
        done = conn.start(request)
        return conn, done

    def drop(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.abort()
        self.conn = None

    async def one(self) -> None:
        rng = self.rng
        name = rng.choice(list(ROUTES))
        route = ROUTES[name]
        behaviour = rng.choices(list(BEHAVIOURS), weights=list(BEHAVIOURS.values()))[0]
        if behaviour == "reconnect" and name not in RESUMABLE:
            behaviour = "hangup"
        chunks, delay = LONG if behaviour in ("hangup", "reconnect") else SHORT
        if behaviour == "slow":
            chunks, delay = 64, 1
        reset = behaviour in ("read", "slow") and rng.random() < RESET_SHARE
        model = f"mock/bench-{chunks}-{delay}" + ("-reset" if reset else "")
        self.chats += 1
        chat_id = f"soak-{id(self)}-{self.chats}"
        request = post(route.path, body(name, model, chat_id))
        slow = 0.02 if behaviour == "slow" else 0.0
        conn, done = await self.stream(request, route, slow=slow)
        if behaviour in ("hangup", "reconnect"):
            await self.hang_up(conn, done, route)
            if behaviour == "reconnect":
                await self.reconnect(conn, name, route, chat_id)
            return
        await self.finish(conn, done, route, expect_error=reset)

    async def finish(
        self, conn: SoakStream, done: asyncio.Future[None], route: Route, expect_error: bool
    ) -> None:
        tally = self.tally
        try:
            async with asyncio.timeout(GUARD_S):
                await done
        except (ConnectionError, TimeoutError) as exc:
            tally.fault(f"{route.name}: {type(exc).__name__} before the end of the response")
            self.drop()
            return
        outcome = classify(conn, route)
        tally.streams += 1
        tally.requests[(route.metric_route, outcome)] += 1
        if outcome == "unterminated":
            tally.fault(f"{route.name}: no terminator: {bytes(conn.tail[-80:])!r}")
        elif outcome == "error" and not expect_error:
            tally.fault(f"{route.name}: unexpected in-band error: {bytes(conn.tail[-120:])!r}")
        elif outcome == "complete" and expect_error:
            tally.fault(f"{route.name}: a reset upstream ended cleanly")

    async def hang_up(self, conn: SoakStream, done: asyncio.Future[None], route: Route) -> None:
        assert conn.first_event is not None
        try:
            async with asyncio.timeout(GUARD_S):
                await conn.first_event
        except TimeoutError:
            self.tally.fault(f"{route.name}: no first event")
        done.cancel()
        status = conn.status
        self.drop()
        self.tally.streams += 1
        if status == 200:
            self.tally.requests[(route.metric_route, "client_disconnect")] += 1
        else:
            self.tally.requests[(route.metric_route, f"status_{status}")] += 1

    async def reconnect(self, first: SoakStream, name: str, route: Route, chat_id: str) -> None:
        if first.status != 200:
            return
        tally, rng = self.tally, self.rng
        stream_id = _header(first.head, b"x-stream-id").decode()
        if name == "ui_chat":
            request, metric_route, after = get(f"/ui/chat/{chat_id}/stream"), None, None
        elif b"\nid: " in b"\n" + bytes(first.tail) and rng.random() < 0.5:
            request = post(route.path, b"{}", b"last-event-id: %b:0\r\n" % stream_id.encode())
            metric_route, after = route.metric_route, 0
        else:
            after = rng.choice((-1, 0))
            request, metric_route = get(f"/stream/{stream_id}?after={after}"), None
        conn, done = await self.stream(request, route, keep=True)
        try:
            async with asyncio.timeout(GUARD_S):
                await done
        except (ConnectionError, TimeoutError) as exc:
            tally.fault(f"reconnect {name}: {type(exc).__name__}")
            self.drop()
            return
        outcome = classify(conn, route)
        tally.streams += 1
        if metric_route is not None:
            tally.requests[(metric_route, outcome)] += 1
        if outcome == "rejected":
            if name == "ui_chat":
                tally.ui_resume_nothing += 1
            else:
                tally.reconnections["nothing"] += 1
            return
        if outcome not in ("complete", "error"):
            tally.fault(f"reconnect {name}: {outcome}: {bytes(conn.tail[-80:])!r}")
            return
        tally.reconnections["resumed"] += 1
        if name == "resumable" and after is not None:
            check_replay(conn, after, tally)


async def load(port: int, concurrency: int, seconds: float, tally: Tally, seed: int) -> None:
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        client = Client(port, tally, random.Random(seed * 1000 + index))
        try:
            while time.monotonic() < deadline:
                try:
                    await client.one()
                except OSError as exc:  # connect refused, reset: the gateway's fault
                    tally.fault(f"{type(exc).__name__}: {exc}")
                    client.drop()
        finally:
            client.drop()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


# ---- the processes and what they look like ---------------------------------------------------


class Redis:
    """A throwaway redis-server on a fixed port, which the soak kills and starts again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while not self.ping():
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)

    def info(self) -> dict[str, int]:
        """Keys, used_memory and connected clients (-1 each while it is down)."""
        import redis

        try:
            client = redis.Redis(port=self.port, socket_timeout=2)
            try:
                memory = client.info("memory")
                clients = client.info("clients")
                return {
                    "keys": int(client.dbsize()),
                    "used_memory": int(memory["used_memory"]),
                    "clients": int(clients["connected_clients"]) - 1,  # not this one
                }
            finally:
                client.close()
        except redis.RedisError:
            return {"keys": -1, "used_memory": -1, "clients": -1}


def config(mock_port: int, redis: Redis | None, retention_s: float, budget: int) -> Path:
    path = Path(tempfile.mkdtemp()) / "soak.toml"
    lines = [
        'redis_failure = "open"',
        # A shared machine under full load: Redis itself answers in time, the default 0.25 s
        # budget for a call does not always survive the gateway's own event loop being busy.
        "redis_timeout_s = 1",
        "[providers.mock]",
        "type = 'openai'",
        f"base_url = 'http://127.0.0.1:{mock_port}/v1'",
        "max_connections = 20000",
        "[keys.soak]",
        f"sha256 = '{hash_key(KEY)}'",
        "rpm = 100000000",
        "tpm = 1000000000000",
        "max_concurrent_streams = 100000",
        "[resume]",
        f"resume_retained_max_bytes = {budget}",
        f"resume_retention_s = {retention_s}",
    ]
    if redis is not None:
        lines.insert(0, f"redis_url = '{redis.url}'")
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def one(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class Gateway:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("wb")
        command = [
            str(Path(sys.executable).with_name("gateway")),
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=self.log)
        wait_healthy(self.port)

    def rss_mib(self) -> float:
        return Process(self.process.pid).memory_kib("VmRSS") / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def census(self, ports: dict[int, str]) -> dict[str, int]:
        """The open descriptors by what they are: sockets by the port at their other end (or
        the gateway's own port: a client), anything else by kind."""
        sockets, unix = _tcp_sockets(), _unix_sockets()
        found: Counter[str] = Counter()
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.process.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[8:-1]
                if inode in unix:
                    found["unix socket"] += 1
                    continue
                if inode not in sockets:  # a TCP socket whose connection is gone (reset)
                    found["socket without a connection"] += 1
                    continue
                local, remote, state = sockets[inode]
                if state == "0A":
                    found["listening"] += 1
                elif local == self.port:
                    found["client"] += 1
                else:
                    found[ports.get(remote, f"socket to :{remote}")] += 1
            else:
                found[target.split(":")[0] if ":" in target else "file"] += 1
        return dict(found)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def _tcp_sockets() -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for every TCP socket on the machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            found[fields[9]] = (local, remote, fields[3])
    return found


def _unix_sockets() -> set[str]:
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {line.split()[6] for line in lines if len(line.split()) > 6}


@dataclass
class Sample:
    t: float
    rss_mib: float
    fds: int
    tasks: int
    active_streams: int
    retained_mib: float
    evictions: int
    requests: int
    redis_keys: int
    redis_used_mib: float
    redis_clients: int


def sample(t0: float, gateway: Gateway, redis: Redis | None, tally: Tally) -> Sample:
    found = metrics(gateway.port)
    info = redis.info() if redis is not None else {"keys": 0, "used_memory": 0, "clients": 0}
    return Sample(
        t=round(time.monotonic() - t0, 1),
        rss_mib=round(gateway.rss_mib(), 1),
        fds=gateway.fds(),
        tasks=int(one(found, "gateway_asyncio_tasks")),
        active_streams=int(one(found, "gateway_active_streams")),
        retained_mib=round(one(found, "gateway_retained_bytes") / 2**20, 2),
        evictions=int(one(found, "gateway_retained_evictions_total", kind="stream")),
        requests=tally.streams,
        redis_keys=info["keys"],
        redis_used_mib=round(info["used_memory"] / 2**20, 2) if info["used_memory"] >= 0 else -1,
        redis_clients=info["clients"],
    )


async def sampler(
    t0: float,
    gateway: Gateway,
    redis: Redis | None,
    tally: Tally,
    every_s: float,
    into: list[Sample],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        into.append(await asyncio.to_thread(sample, t0, gateway, redis, tally))
        try:
            async with asyncio.timeout(every_s):
                await stop.wait()
        except TimeoutError:
            pass


async def restart_redis(redis: Redis, at_s: float, down_s: float, note: list[str]) -> None:
    await asyncio.sleep(at_s)
    note.append(f"redis killed at {at_s:.0f} s")
    await asyncio.to_thread(redis.stop)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(redis.start)
    note.append(f"redis back after {down_s:.0f} s")


async def settle(gateway: Gateway, ports: dict[int, str], requests: int) -> dict[Any, float]:
    """Wait until no stream is in flight, the gateway has counted `requests` relay requests
    (a resumable reader's request ends a little after its generation, which is what
    `gateway_active_streams` counts), and its pooled upstream connections have closed (an
    idle one closes within twice the pool's 4 s keep-alive); its metrics then."""
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:  # polling conditions, with a guard
        found = await asyncio.to_thread(metrics, gateway.port)
        census = gateway.census(ports)
        counted = sum(v for (name, _), v in found.items() if name == "gateway_requests_total")
        idle = not one(found, "gateway_active_streams") and not census.get("upstream")
        if idle and counted >= requests:
            break
        await asyncio.sleep(0.5)
    return await asyncio.to_thread(metrics, gateway.port)


async def base_under_load(
    mock_port: int, redis: Redis | None, retention_s: float, log: Path, args: argparse.Namespace
) -> float:
    """The process's base: its peak RSS under the same traffic with nothing retained
    (`resume_retained_max_bytes = 0`), from a gateway of its own."""
    gateway = Gateway(config(mock_port, redis, retention_s, 0), log.with_suffix(".base.log"))
    try:
        samples: list[Sample] = []
        stop = asyncio.Event()
        sampling = asyncio.ensure_future(
            sampler(time.monotonic(), gateway, redis, Tally(), 1.0, samples, stop)
        )
        await load(gateway.port, args.concurrency, args.base_seconds, Tally(), args.seed + 2)
        stop.set()
        await sampling
        return max(s.rss_mib for s in samples)
    finally:
        gateway.stop()


async def keys_gone(redis: Redis, limit_s: float) -> float | None:
    """Seconds until Redis holds no key (None: some were still there after `limit_s`)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:  # polling a condition, with a guard
        if (await asyncio.to_thread(redis.info))["keys"] == 0:
            return round(time.monotonic() - start, 1)
        await asyncio.sleep(2)
    return None


# ---- the run ---------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = "redis" if args.redis else "memory"
    mock_port = free_port()
    mock = start_mock(mock_port)  # start-up, before any load
    redis = Redis() if args.redis else None
    if redis is not None:
        redis.start()
    retention_s = args.retention if args.retention is not None else (60 if args.redis else 300)
    args.retention_s = retention_s
    log_path = RESULTS / f"soak-{label}-{stamp}.log"
    budget = int(args.budget_mib * 2**20)
    base_rss = None
    if args.base_seconds > 0:
        base_rss = await base_under_load(mock_port, redis, retention_s, log_path, args)
    gateway = Gateway(config(mock_port, redis, retention_s, budget), log_path)
    report: dict[str, Any] = {
        "mode": label,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "budget_mib": args.budget_mib,
        "retention_s": retention_s,
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "notes": [],
    }
    try:
        report["rss_idle_mib"] = gateway.rss_mib()
        ports = {mock_port: "upstream"} | ({redis.port: "redis"} if redis is not None else {})
        warm = Tally()
        warm_samples: list[Sample] = []
        stop_warm = asyncio.Event()
        t_warm = time.monotonic()
        warm_task = asyncio.ensure_future(
            sampler(t_warm, gateway, redis, warm, 1.0, warm_samples, stop_warm)
        )
        await load(gateway.port, args.concurrency, args.warmup, warm, args.seed + 1)
        stop_warm.set()
        await warm_task
        before = await settle(gateway, ports, sum(warm.requests.values()))
        base = {"fds": gateway.fds(), "tasks": int(one(before, "gateway_asyncio_tasks"))}
        base["census"] = gateway.census(ports)
        warm_peak = max(s.rss_mib for s in warm_samples)
        base["rss_mib"] = base_rss if base_rss is not None else warm_peak
        report["base"] = base

        tally = Tally()
        samples: list[Sample] = []
        stop = asyncio.Event()
        t0 = time.monotonic()
        sampling = asyncio.ensure_future(
            sampler(t0, gateway, redis, tally, args.sample_every, samples, stop)
        )
        restarting = None
        if redis is not None:
            restarting = asyncio.ensure_future(
                restart_redis(redis, args.duration / 2, 3.0, report["notes"])
            )
        await load(gateway.port, args.concurrency, args.duration, tally, args.seed)
        elapsed = time.monotonic() - t0
        if restarting is not None:
            await restarting
        after = await settle(
            gateway, ports, sum(warm.requests.values()) + sum(tally.requests.values())
        )
        if redis is not None:  # every key expires once its stream's retention is over
            report["redis_keys_gone_after_s"] = await keys_gone(redis, retention_s + 200)
        stop.set()
        await sampling
        samples.append(sample(t0, gateway, redis, tally))
        report["census_after"] = gateway.census(ports)
        report["rate_per_s"] = round(tally.streams / elapsed, 1)
        report["streams"] = tally.streams
        report["checks"] = check(
            tally, before, after, samples, base, report["census_after"], redis, args
        )
        report["client"] = {f"{r} {o}": n for (r, o), n in sorted(tally.requests.items())}
        report["client_reconnections"] = dict(tally.reconnections)
        report["ui_resume_nothing"] = tally.ui_resume_nothing
        report["faults"] = tally.faults
        report["summary"] = summary(samples)
        log_text = log_path.read_text(errors="replace")
        tracebacks = log_text.count("Traceback")
        report["gateway_log_tracebacks"] = tracebacks
        report["checks"]["no tracebacks in the gateway's log"] = tracebacks == 0
        if redis is not None:
            gone = report["redis_keys_gone_after_s"]
            report["checks"]["every Redis key expired after the load"] = gone is not None
    finally:
        gateway.stop()
        if redis is not None:
            redis.stop()
        mock.terminate()
        mock.wait(timeout=10)
    csv_path = RESULTS / f"soak-{label}-{stamp}.csv"
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(asdict(samples[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    report["csv"] = str(csv_path.relative_to(ROOT))
    svg = render_svg(samples, report)
    svg_path = (
        ROOT / "docs" / f"soak-{label}.svg" if args.svg else RESULTS / f"soak-{label}-{stamp}.svg"
    )
    svg_path.write_text(svg)
    report["svg"] = str(svg_path.relative_to(ROOT))
    (RESULTS / f"soak-{label}-{stamp}.json").write_text(json.dumps(report, indent=2))
    return report


def check(
    tally: Tally,
    before: dict[Any, float],
    after: dict[Any, float],
    samples: list[Sample],
    base: dict[str, Any],
    census_after: dict[str, int],
    redis: Redis | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Each check's verdict (True: passed), and the numbers behind the counting ones."""
    checks: dict[str, Any] = {}
    checks["zero 5xx"] = tally.five_xx() == 0
    checks["every stream terminated or hung up (no faults)"] = not tally.faults
    # The gateway's counts over the measured run: after minus before (the warm-up's).
    gateway_counts: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in after.items():
        if name != "gateway_requests_total":
            continue
        labels_d = dict(labels)
        outcome = labels_d["outcome"]
        outcome = outcome if outcome in ("complete", "client_disconnect", "rejected") else "error"
        delta = value - before.get((name, labels), 0.0)
        if delta:
            gateway_counts[(labels_d["route"], outcome)] += int(delta)
    client_counts = Counter(
        {k: v for k, v in tally.requests.items() if not k[1].startswith("status_")}
    )
    mismatches = {
        f"{route} {outcome}": {"client": client_counts[(route, outcome)], "gateway": n}
        for (route, outcome), n in (gateway_counts | client_counts).items()
        if client_counts[(route, outcome)] != gateway_counts[(route, outcome)]
    }
    checks["client counts equal gateway_requests_total"] = not mismatches
    checks["count mismatches"] = mismatches
    reconnections = {}
    for result in ("resumed", "nothing"):
        name = "gateway_reconnections_total"
        key = (name, (("result", result),))
        reconnections[result] = {
            "client": tally.reconnections[result],
            "gateway": int(after.get(key, 0) - before.get(key, 0)),
        }
    checks["client reconnections equal gateway_reconnections_total"] = all(
        v["client"] == v["gateway"] for v in reconnections.values()
    )
    checks["reconnections"] = reconnections
    checks["no stream in flight at the end"] = one(after, "gateway_active_streams") == 0
    tasks_end = int(one(after, "gateway_asyncio_tasks"))

    # The Redis client keeps its pool's connections open (as many as the most calls it had
    # in flight at once; after a Redis restart some are to the dead server until next used);
    # every other descriptor must be back to what it was at rest.
    # With Redis, the pool's sockets to the killed server that were reset when next written
    # are no longer in the kernel's tables, so their kind shows only as "without a connection"
    # (they are the pool's too: without Redis there are none).
    pool_kinds = ("redis", "socket without a connection") if redis is not None else ()

    def without_redis(census: dict[str, int]) -> int:
        return sum(n for kind, n in census.items() if kind not in pool_kinds)

    fds = {
        "before": without_redis(base["census"]),
        "after": without_redis(census_after),
        "redis_pool_before": sum(base["census"].get(kind, 0) for kind in pool_kinds),
        "redis_pool_after": sum(census_after.get(kind, 0) for kind in pool_kinds),
    }
    checks["fds at rest, without the Redis pool"] = fds
    checks["descriptors back to idle"] = fds["after"] <= fds["before"]
    checks["tasks at rest"] = {"before": base["tasks"], "after": tasks_end}
    checks["tasks back to idle"] = tasks_end <= base["tasks"]
    under_load = [s for s in samples if s.t <= args.duration]
    third = max(1, len(under_load) // 3)
    first_max = max(s.rss_mib for s in under_load[:third])
    last_max = max(s.rss_mib for s in under_load[-third:])
    peak = max(s.rss_mib for s in samples)
    checks["rss first third max MiB"] = first_max
    checks["rss last third max MiB"] = last_max
    checks["rss levels off (last third within 5 % of the first third's max)"] = (
        last_max <= first_max * 1.05
    )
    limit = base["rss_mib"] + args.budget_mib
    checks["rss peak MiB"] = peak
    checks["rss limit MiB (base + budget)"] = round(limit, 1)
    checks["rss under the budget plus the base"] = peak <= limit
    if redis is not None:
        live = [s for s in under_load if s.redis_keys >= 0]
        third_r = max(1, len(live) // 3)
        first_keys = max(s.redis_keys for s in live[:third_r])
        last_keys = max(s.redis_keys for s in live[-third_r:])
        first_mem = max(s.redis_used_mib for s in live[:third_r])
        last_mem = max(s.redis_used_mib for s in live[-third_r:])
        checks["redis keys first/last third max"] = [first_keys, last_keys]
        checks["redis used_memory MiB first/last third max"] = [first_mem, last_mem]
        # Redis holds what the last retention window's streams left (and what runs): its size
        # follows the rate, which moves on a shared machine. Levelling off means no key
        # outlives that window: the keys never exceed what the window's streams account for.
        bound = redis_bound(live, args.retention_s)
        checks["redis keys within what the last retention window accounts for"] = bound["ok"]
        checks["redis keys per stream of the window (max)"] = bound["max_keys_per_stream"]
    return checks


KEYS_PER_STREAM = 2  # a resumable stream's log and meta; a chat's entry goes when it ends
FIXED_KEYS = 64  # the key's limit counters and slots, and slack for the sampling's skew


def redis_bound(samples: list[Sample], retention_s: float) -> dict[str, Any]:
    """Whether, at every sample once a retention window has passed, Redis holds no more keys
    than the streams of the last window (plus those in flight) account for: KEYS_PER_STREAM
    each (an over-count: only resumable streams write logs) and FIXED_KEYS. A key that
    outlived its window would make the keys grow past it as the run goes on."""
    window = retention_s + 10  # the expiry starts at the stream's end
    ok, worst = True, 0.0
    for sample in samples:
        if sample.t < window or sample.redis_keys < 0:
            continue
        earlier = [s for s in samples if s.t <= sample.t - window]
        if not earlier:
            continue
        streams = sample.requests - earlier[-1].requests + sample.active_streams
        allowed = KEYS_PER_STREAM * streams + FIXED_KEYS
        ok = ok and sample.redis_keys <= allowed
        worst = max(worst, sample.redis_keys / max(streams, 1))
    return {"ok": ok, "max_keys_per_stream": round(worst, 3)}


def summary(samples: list[Sample]) -> dict[str, Any]:
    def span(values: list[float]) -> list[float]:
        return [min(values), max(values)]

    return {
        "rss_mib": span([s.rss_mib for s in samples]),
        "fds": span([s.fds for s in samples]),
        "tasks": span([s.tasks for s in samples]),
        "retained_mib": span([s.retained_mib for s in samples]),
        "evictions": samples[-1].evictions,
        "redis_keys": span([s.redis_keys for s in samples]),
        "redis_used_mib": span([s.redis_used_mib for s in samples]),
    }


# ---- the picture -----------------------------------------------------------------------------

SERIES = (
    ("rss_mib", "RSS (MiB)", "#1f77b4"),
    ("fds", "open descriptors", "#2ca02c"),
    ("tasks", "asyncio tasks", "#9467bd"),
    ("retained_mib", "retained (MiB)", "#ff7f0e"),
    ("redis_keys", "Redis keys", "#d62728"),
    ("redis_used_mib", "Redis used_memory (MiB)", "#8c564b"),
)


def render_svg(samples: list[Sample], report: dict[str, Any]) -> str:
    """One small chart per series, over the same time axis (hand-written SVG)."""
    width, height, left, pad = 760, 110, 70, 24
    shown = [s for s in SERIES if report["mode"] == "redis" or not s[0].startswith("redis")]
    total_h = pad * 2 + len(shown) * (height + pad)
    t_max = max(s.t for s in samples) or 1.0
    title = (
        f"soak ({report['mode']}): {report['duration_s']:.0f} s, {report['rate_per_s']} streams/s, "
        f"budget {report['budget_mib']:.0f} MiB, retention {report['retention_s']:.0f} s"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 20}" '
        f'height="{total_h}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13">{title}</text>',
    ]
    for index, (attr, name, colour) in enumerate(shown):
        top = pad + 8 + index * (height + pad)
        values = [float(getattr(s, attr)) for s in samples]
        points_src = [(s.t, v) for s, v in zip(samples, values, strict=True) if v >= 0]
        hi = max((v for _, v in points_src), default=1.0) or 1.0
        hi *= 1.1
        parts.append(
            f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" '
            f'stroke="#ccc"/>'
        )
        parts.append(f'<text x="{left + 4}" y="{top + 12}" fill="{colour}">{name}</text>')
        parts.append(f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{hi:.3g}</text>')
        parts.append(f'<text x="{left - 4}" y="{top + height}" text-anchor="end">0</text>')
        points = " ".join(
            f"{left + width * t / t_max:.1f},{top + height - height * v / hi:.1f}"
            for t, v in points_src
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
    axis_y = total_h - pad + 12
    for tick in range(6):
        t = t_max * tick / 5
        x = left + width * tick / 5
        parts.append(f'<text x="{x:.0f}" y="{axis_y}" text-anchor="middle">{t:.0f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (600)")
    parser.add_argument("--warmup", type=float, default=15, help="seconds of warm-up load (15)")
    parser.add_argument(
        "--base-seconds",
        type=float,
        default=90,
        help="seconds of the same load on a gateway that retains nothing, for its base RSS (90)",
    )
    parser.add_argument(
        "--redis", action="store_true", help="with a redis-server, restarted midway"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (32)")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds (2)")
    parser.add_argument("--retention", type=float, default=None, help="resume_retention_s")
    parser.add_argument("--budget-mib", type=float, default=BUDGET_MIB, help="the retention budget")
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--svg", action="store_true", help="write the picture into docs/")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        report = asyncio.run(soak(args))
    else:
        report = uvloop.run(soak(args))
    print(json.dumps(report, indent=2))
    verdicts = [v for v in report["checks"].values() if isinstance(v, bool)]
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
