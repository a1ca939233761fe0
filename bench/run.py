"""`make bench`: the gateway against a direct connection to the same mock, in the same run.

The gateway runs as users run it (`gateway serve`, one worker) pinned to core 0; the mock
upstream and the load client run on core 1. Every phase measures the direct connection first
and then the same traffic through the gateway's /v1/chat/completions, /stream?format=sse and
/v1/messages, /ui/chat (the AI SDK's UI message stream) and resumable SSE.
Any error, short stream or missing terminator fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peers as peer_servers
from bench.loadgen import (
    Results,
    Target,
    abandon,
    closed_loop,
    hold_open,
    replay,
    sequential,
    slow_readers,
)
from bench.peers import Peer

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "PERFORMANCE.md"
RESULTS = ROOT / "bench" / "results"
CHUNKS = 64


@dataclass
class Profile:
    ttfc_samples: int
    seconds: float
    levels: tuple[int, ...]
    holds: tuple[int, ...]
    hold_chunks: int
    hangups: int
    slow_readers: int
    replays: int = 50
    # Unmeasured traffic before each target at each level: Portkey (Node's JIT) needs about
    # 6 s to reach its steady rate, and measuring it cold understated it by a fifth
    # (docs/PERFORMANCE.md, "Two harnesses").
    warmup_s: float = 5.0


FULL = Profile(300, 6.0, (1, 50, 200), (1000, 9500), 40, 200, 1000)
QUICK = Profile(60, 1.5, (1, 50, 200), (300,), 8, 30, 200, 10, warmup_s=1.0)
SLOW_READER_CHUNKS = 10_000  # ~1.3 MB per stream, sent as fast as the reader allows
REPLAY_EVENTS = 1000  # SPEC §4.5: a reconnection's replay of a 1,000-event stream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *command]
    return command


def tool_harness() -> tuple[subprocess.Popen[bytes], int, int]:
    """For the one-off tools (bench.timeline, bench.stream_memory): this process on core 1
    with the mock started there, and free ports for the mock and a gateway."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    mock_port, gw_port = free_port(), free_port()
    return start_mock(mock_port, core=1), mock_port, gw_port


def serve_gateway(where: str, *flags: str) -> None:
    """`gateway serve` in this process, for a tool's instrumented gateway: `where` is
    "CONFIG:PORT"."""
    from gateway.cli import main as gateway_main

    config, _, port = where.rpartition(":")
    sys.argv = ["gateway", "serve", "--config", config, "--port", port, *flags]
    gateway_main()


def start_mock(mock_port: int, core: int | None = None) -> subprocess.Popen[bytes]:
    """The mock upstream on `mock_port` (pinned to `core`, when given), once it listens; its
    stdin and stdout stay open: the benchmark asks it for its CPU time through them."""
    command = [sys.executable, "-m", "bench.mock_upstream", str(mock_port)]
    if core is not None:
        command = pinned(core, command)
    mock = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert mock.stdout is not None
    mock.stdout.readline()  # its ready line
    return mock


class Process:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def targets(
    mock: int, gateway: int, chunks: int, delay_ms: int, peers: tuple[Peer, ...] = ()
) -> list[Target]:
    model = f"bench-{chunks}-{delay_ms}"
    messages = [{"role": "user", "content": "hi"}]
    direct = json.dumps({"model": model, "messages": messages, "stream": True}).encode()
    v1 = json.dumps({"model": f"mock/{model}", "messages": messages, "stream": True}).encode()
    sse = json.dumps({"model": f"mock/{model}", "prompt": "hi"}).encode()
    anthropic = json.dumps(
        {"model": f"mock/{model}", "max_tokens": 1024, "messages": messages, "stream": True}
    ).encode()
    resumable = json.dumps({"model": f"mock/{model}", "prompt": "hi", "resumable": True}).encode()
    ui_message = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    ui = json.dumps({"model": f"mock/{model}", "id": "@ID@", "messages": [ui_message]}).encode()
    return [
        Target("direct", mock, "/v1/chat/completions", direct, b"[DONE]", chunks + 3),
        # The native path (SPEC §4.9: an OpenAI client on an `openai` provider): the mock's own
        # chunks, its finish chunk and [DONE] (its usage chunk is not asked for, so not sent).
        # Before the native path, the translated stream had a role chunk more.
        Target(
            "gateway /v1/chat/completions",
            gateway,
            "/v1/chat/completions",
            v1,
            b"[DONE]",
            chunks + 2,
        ),
        Target(
            "gateway /stream?format=sse",
            gateway,
            "/stream?format=sse",
            sse,
            b"event: done",
            chunks + 1,
        ),
        # message_start, content_block_start, the deltas, content_block_stop, message_delta,
        # message_stop
        Target(
            "gateway /v1/messages",
            gateway,
            "/v1/messages",
            anthropic,
            b"event: message_stop",
            chunks + 5,
        ),
        # SPEC §4.5: a detached generation writing its log, the request as its first reader
        # (`retry:` is one more blank-line-terminated frame).
        Target(
            "gateway /stream?format=sse resumable",
            gateway,
            "/stream?format=sse",
            resumable,
            b"event: done",
            chunks + 2,
        ),
        # start, start-step, text-start, the deltas, text-end, finish-step, finish, [DONE]
        Target("gateway /ui/chat", gateway, "/ui/chat", ui, b"data: [DONE]", chunks + 7),
        *(
            Target(
                peer.name,
                peer.port,
                "/v1/chat/completions",
                direct,
                b"[DONE]",
                chunks + 3,
                process=peer.name,
                headers=peer.headers,
            )
            for peer in peers
        ),
    ]


def faults(results: Results) -> int:
    return results.errors + results.short + results.unterminated


class Bench:
    def __init__(
        self,
        profile: Profile,
        gateway_pid: int,
        mock_port: int,
        gw_port: int,
        mock: subprocess.Popen[bytes],
        peers: dict[Peer, int] | None = None,
    ) -> None:
        self.profile = profile
        self.gateway = Process(gateway_pid)
        self.peers = tuple(peers or {})
        self.processes = {"gateway": self.gateway}
        self.processes.update({peer.name: Process(pid) for peer, pid in (peers or {}).items()})
        self.mock_port, self.gw_port, self.mock = mock_port, gw_port, mock
        self.report: dict[str, Any] = {"faults": 0, "warnings": []}

    def count(self, name: str, results: Results) -> None:
        bad = faults(results)
        self.report["faults"] += bad
        if bad:
            self.report["warnings"].append(
                f"{name}: {results.errors} errors, {results.short} short streams, "
                f"{results.unterminated} missing terminators"
            )

    async def ttfc(self) -> None:
        rows = {}
        for target in targets(self.mock_port, self.gw_port, 4, 20, self.peers):
            results = await sequential(target, self.profile.ttfc_samples)
            self.count(f"ttfc {target.name}", results)
            rows[target.name] = {
                "p50_ms": percentile(results.ttfc, 0.5) * 1000,
                "p99_ms": percentile(results.ttfc, 0.99) * 1000,
                "samples": len(results.ttfc),
            }
        self.report["ttfc"] = rows

    async def throughput(self) -> None:
        rows = []
        for level in self.profile.levels:
            for target in targets(self.mock_port, self.gw_port, CHUNKS, 0, self.peers):
                process = self.processes.get(target.process, self.gateway)
                warmup = await closed_loop(target, level, self.profile.warmup_s)
                self.count(f"c={level} {target.name} (warm-up)", warmup)
                cpu = process.cpu_seconds()
                halves = []
                for _ in range(2):
                    results = await closed_loop(target, level, self.profile.seconds / 2)
                    self.count(f"c={level} {target.name}", results)
                    halves.append(results.streams / (self.profile.seconds / 2))
                cpu = process.cpu_seconds() - cpu
                streams = sum(halves) / 2
                row = {
                    "concurrency": level,
                    "target": target.name,
                    "streams_s": streams,
                    "chunks_s": streams * CHUNKS,
                }
                if target.name != "direct":
                    total = streams * self.profile.seconds
                    row["cpu_s_per_1000"] = cpu / total * 1000 if total else float("nan")
                if min(halves) < 0.85 * max(halves):
                    self.report["warnings"].append(
                        f"c={level} {target.name}: not steady ({halves[0]:.0f} then "
                        f"{halves[1]:.0f} streams/s)"
                    )
                rows.append(row)
        self.report["throughput"] = rows

    async def memory(self) -> None:
        rows = []
        chunks = self.profile.hold_chunks
        target = targets(self.mock_port, self.gw_port, chunks, 1000)[1]
        for count in self.profile.holds:
            base = self.gateway.memory_kib("VmRSS")
            opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            holding = asyncio.ensure_future(hold_open(target, count, opened))
            await opened
            held = self.gateway.memory_kib("VmRSS")
            results = await holding
            self.count(f"hold {count}", results)
            rows.append(
                {
                    "streams": count,
                    "rss_base_mib": base / 1024,
                    "rss_open_mib": held / 1024,
                    "kib_per_stream": (held - base) / count,
                    "completed": results.streams - faults(results),
                }
            )
        self.report["memory"] = rows

    async def slow_readers(self) -> None:
        count = self.profile.slow_readers
        target = targets(self.mock_port, self.gw_port, SLOW_READER_CHUNKS, 0)[2]
        loop = asyncio.get_running_loop()
        paused, resume = loop.create_future(), loop.create_future()
        base = self.gateway.memory_kib("VmRSS")
        running = asyncio.ensure_future(slow_readers(target, count, paused, resume))
        await paused
        held = await self.steady_rss()  # every buffer on the way has filled up
        resume.set_result(None)
        results = await running
        self.count(f"slow readers {count}", results)
        self.report["slow_readers"] = {
            "streams": count,
            "rss_base_mib": base / 1024,
            "rss_mib": held / 1024,
            "kib_per_stream": (held - base) / count,
            "completed": results.streams - faults(results),
        }

    async def steady_rss(self, limit_s: float = 60) -> int:
        """The gateway's RSS once it stops growing (two readings 1 s apart within 1 %)."""
        previous = self.gateway.memory_kib("VmRSS")
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            current = self.gateway.memory_kib("VmRSS")
            if abs(current - previous) <= previous * 0.01:
                return current
            previous = current
        self.report["warnings"].append("slow readers: RSS still growing after 60 s")
        return previous

    async def disconnects(self) -> None:
        target = targets(self.mock_port, self.gw_port, 10_000, 10)[2]
        self.lost_times()  # reset
        results = await abandon(target, self.profile.hangups)
        await asyncio.sleep(0.5)
        lost = self.lost_times()
        delays = [b - a for a, b in zip(results.hangups, lost, strict=False)]
        self.report["disconnect"] = {
            "cycles": len(results.hangups),
            "upstream_closes_seen": len(lost),
            "p50_ms": percentile(delays, 0.5) * 1000 if delays else None,
            "p99_ms": percentile(delays, 0.99) * 1000 if delays else None,
        }
        if len(lost) != len(results.hangups):
            self.report["faults"] += 1
            self.report["warnings"].append(
                f"disconnect: {len(results.hangups)} hang-ups but {len(lost)} upstream closes"
            )

    async def replay(self) -> None:
        """Reconnect after the first event of an ended 1,000-event resumable stream (the log
        in the gateway's memory): the time to replay the rest, to its `done` event."""
        model = f"mock/bench-{REPLAY_EVENTS}-0"
        body = json.dumps({"model": model, "prompt": "hi", "resumable": True}).encode()
        start = Target("", self.gw_port, "/stream?format=sse", body, b"", 0).request()
        results = await replay(self.gw_port, start, REPLAY_EVENTS, self.profile.replays)
        self.count("replay", results)
        self.report["replay"] = {
            "events": REPLAY_EVENTS,
            "samples": len(results.ttfc),
            "p50_ms": percentile(results.ttfc, 0.5) * 1000,
            "p99_ms": percentile(results.ttfc, 0.99) * 1000,
        }

    def lost_times(self) -> list[float]:
        assert self.mock.stdin is not None
        assert self.mock.stdout is not None
        self.mock.stdin.write(b"lost\n")
        self.mock.stdin.flush()
        return [float(t) for t in self.mock.stdout.readline().split()]


def wait_healthy(port: int, log: str = "") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                if b"200 OK" in sock.recv(1024):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the gateway did not start (its output: {log})")


def gateway_config(mock_port: int) -> Path:
    path = Path(tempfile.mkdtemp()) / "bench.toml"
    path.write_text(
        "[providers.mock]\ntype = 'openai'\n"
        f"base_url = 'http://127.0.0.1:{mock_port}/v1'\nmax_connections = 20000\n"
    )
    return path


async def measure(profile: Profile, bench: Bench) -> dict[str, Any]:
    bench.report["rss_at_rest_mib"] = bench.gateway.memory_kib("VmRSS") / 1024
    bench.report["peers_rss_at_rest_mib"] = {
        name: process.memory_kib("VmRSS") / 1024
        for name, process in bench.processes.items()
        if name != "gateway"
    }
    await bench.ttfc()
    await bench.throughput()
    await bench.disconnects()
    await bench.replay()
    await bench.memory()
    bench.report["peak_rss_mib"] = bench.gateway.memory_kib("VmHWM") / 1024
    return bench.report


def start_gateway(mock_port: int, gw_port: int) -> subprocess.Popen[bytes]:
    """The gateway as users run it: `gateway serve` at its default log level (one access line
    per request, which deployments pay for), its output to a file as a log collector would
    take it (docs/PERFORMANCE.md, "Method")."""
    gateway_bin = str(Path(sys.executable).with_name("gateway"))
    command = [gateway_bin, "serve", "--config", str(gateway_config(mock_port)), "--port"]
    # Kept after the run, to read when it fails.
    with tempfile.NamedTemporaryFile(prefix="bench-gateway-", suffix=".log", delete=False) as log:
        gateway = subprocess.Popen(
            pinned(0, [*command, str(gw_port)]), cwd=ROOT, stdout=log, stderr=log
        )
    wait_healthy(gw_port, log.name)
    return gateway


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=60)


def run_loop(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def start_peers(mock_port: int) -> dict[Peer, subprocess.Popen[bytes]]:
    started: dict[Peer, subprocess.Popen[bytes]] = {}
    try:
        for starter in peer_servers.STARTERS:
            peer, process = peer_servers.start(starter, mock_port, free_port(), pinned(0, []))
            started[peer] = process
            wait_listening(peer.port)
    except BaseException:
        for process in started.values():
            stop(process)
        raise
    return started


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise SystemExit(f"a peer did not start listening on port {port}")


def run(profile: Profile, with_peers: bool = False) -> dict[str, Any]:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    mock_port = free_port()
    mock = start_mock(mock_port, core=1)
    try:
        gw_port = free_port()
        gateway = start_gateway(mock_port, gw_port)
        peers = start_peers(mock_port) if with_peers else {}
        try:
            pids = {peer: process.pid for peer, process in peers.items()}
            bench = Bench(profile, gateway.pid, mock_port, gw_port, mock, pids)
            report: dict[str, Any] = run_loop(measure(profile, bench))
        finally:
            for process in (gateway, *peers.values()):
                stop(process)
        # Memory phases measure growth, which a process that already held thousands of
        # streams would understate (its allocator reuses what they freed): a fresh one.
        gw_port = free_port()
        gateway = start_gateway(mock_port, gw_port)
        try:
            fresh = Bench(profile, gateway.pid, mock_port, gw_port, mock)
            fresh.report = report
            run_loop(fresh.slow_readers())
        finally:
            stop(gateway)
        return report
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def run_replay(profile: Profile) -> dict[str, Any]:
    """The replay phase on its own (a smoke run of it; no report is written)."""
    mock_port = free_port()
    mock = start_mock(mock_port)
    try:
        gw_port = free_port()
        gateway = start_gateway(mock_port, gw_port)
        try:
            bench = Bench(profile, gateway.pid, mock_port, gw_port, mock)
            run_loop(bench.replay())
            return bench.report
        finally:
            stop(gateway)
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite the report")
    parser.add_argument("--only-replay", action="store_true", help="only the replay phase")
    parser.add_argument(
        "--peers", action="store_true", help="also measure a naive relay and Portkey's gateway"
    )
    args = parser.parse_args()
    if args.only_replay:
        print(json.dumps(run_replay(QUICK), indent=2))
        return
    started = time.time()
    report = run(QUICK if args.quick else FULL, with_peers=args.peers)
    report["mode"] = "quick" if args.quick else "full"
    report["seconds"] = round(time.time() - started, 1)
    report["machine"] = machine()
    check_harness(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{report['mode']}.json").write_text(json.dumps(report, indent=2))
    text = render(report)
    print(text)
    if not args.no_report and not args.quick:
        write_report(text)
    if report["faults"]:
        raise SystemExit(f"bench: {report['faults']} faults (errors, short or unterminated)")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def check_harness(report: dict[str, Any]) -> None:
    for level in {row["concurrency"] for row in report["throughput"]}:
        rows = [r for r in report["throughput"] if r["concurrency"] == level]
        direct = next(r for r in rows if r["target"] == "direct")["chunks_s"]
        best = max(r["chunks_s"] for r in rows if r["target"] != "direct")
        if level > 1 and direct < 2 * best:
            report["warnings"].append(
                f"c={level}: the direct figure ({direct:.0f} chunks/s) is under twice the "
                "gateway's: the harness may be the limit"
            )


TTFC_HEAD = [
    "| time to first chunk (c=1, 20 ms between chunks) | p50 ms | p99 ms | added p50 | added p99 |",
    "|---|---|---|---|---|",
]
THROUGHPUT_HEAD = [
    "| throughput (64 chunks/stream, no delay) | concurrency | streams/s | chunks/s "
    "| % of direct | gateway CPU s / 1000 streams |",
    "|---|---|---|---|---|---|",
]


def render(report: dict[str, Any]) -> str:
    lines = [f"Mode: {report['mode']}, {report['seconds']} s. Machine: {report['machine']}.", ""]
    lines += [*TTFC_HEAD, *_ttfc_rows(report["ttfc"]), "", *THROUGHPUT_HEAD]
    lines += _throughput_rows(report["throughput"])
    lines += _peer_rows(report)
    lines += [
        "",
        "| memory | value |",
        "|---|---|",
        f"| gateway RSS at rest | {report['rss_at_rest_mib']:.1f} MiB |",
        f"| gateway peak RSS | {report['peak_rss_mib']:.1f} MiB |",
    ]
    for name, rss in report.get("peers_rss_at_rest_mib", {}).items():
        lines.append(f"| {name} RSS at rest | {rss:.1f} MiB |")
    for row in report["memory"]:
        lines.append(
            f"| RSS growth per open slow stream, {row['streams']} streams "
            f"({row['rss_base_mib']:.0f} → {row['rss_open_mib']:.0f} MiB; "
            f"{row['completed']} completed exactly) | {row['kib_per_stream']:.1f} KiB |"
        )
    slow = report["slow_readers"]
    lines.append(
        f"| {slow['streams']} slow-reading clients paused mid-stream on a fast upstream "
        f"({slow['rss_base_mib']:.0f} → {slow['rss_mib']:.0f} MiB; {slow['completed']} "
        f"completed exactly once resumed) | {slow['kib_per_stream']:.1f} KiB per stream |"
    )
    d = report["disconnect"]
    p50 = f"{d['p50_ms']:.2f}" if d["p50_ms"] is not None else "n/a"
    p99 = f"{d['p99_ms']:.2f}" if d["p99_ms"] is not None else "n/a"
    lines += [
        "",
        f"Client disconnect → upstream connection closed ({d['cycles']} cycles, "
        f"{d['upstream_closes_seen']} closes seen): p50 {p50} ms, p99 {p99} ms.",
        "",
        f"Faults (errors, short streams, missing terminators): {report['faults']}.",
    ]
    if "replay" in report:
        r = report["replay"]
        lines[-2:-2] = [
            f"Reconnection replay of a {r['events']}-event resumable stream (after its first "
            f"event, to its `done`; {r['samples']} samples): p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms.",
            "",
        ]
    lines += [f"- warning: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _ttfc_rows(ttfc: dict[str, Any]) -> list[str]:
    direct, rows = ttfc["direct"], []
    for name, row in ttfc.items():
        added = ["", ""]
        if name != "direct":
            added = [f"{row[k] - direct[k]:+.2f}" for k in ("p50_ms", "p99_ms")]
        rows.append(
            f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {added[0]} | {added[1]} |"
        )
    return rows


def _throughput_rows(throughput: list[dict[str, Any]]) -> list[str]:
    rows = []
    for row in throughput:
        direct = next(
            r
            for r in throughput
            if r["concurrency"] == row["concurrency"] and r["target"] == "direct"
        )
        share = row["chunks_s"] / direct["chunks_s"] * 100 if direct["chunks_s"] else 0
        cpu = f"{row['cpu_s_per_1000']:.2f}" if "cpu_s_per_1000" in row else ""
        rows.append(
            f"| {row['target']} | {row['concurrency']} | {row['streams_s']:.0f} | "
            f"{row['chunks_s']:.0f} | {share:.0f} % | {cpu} |"
        )
    return rows


def _peer_rows(report: dict[str, Any]) -> list[str]:
    """Same-run ratios gateway / peer: chunks per second, and peer CPU / gateway CPU."""
    throughput = report["throughput"]
    peer_names = [name for name in report.get("peers_rss_at_rest_mib", {}) if name != "gateway"]
    if not peer_names:
        return []
    head = " | ".join(f"x {name} (chunks/s) | x {name} (CPU)" for name in peer_names)
    lines = ["", f"| gateway against its peers, same run | concurrency | {head} |"]
    lines.append("|---|---|" + "---|---|" * len(peer_names))
    for row in throughput:
        if not row["target"].startswith("gateway ") or row["concurrency"] == 1:
            continue
        cells = []
        for name in peer_names:
            peer = next(
                r
                for r in throughput
                if r["target"] == name and r["concurrency"] == row["concurrency"]
            )
            speed = row["chunks_s"] / peer["chunks_s"] if peer["chunks_s"] else float("nan")
            cpu = peer["cpu_s_per_1000"] / row["cpu_s_per_1000"] if row["cpu_s_per_1000"] else 0
            cells.append(f"{speed:.2f}x | {cpu:.2f}x")
        lines.append(f"| {row['target']} | {row['concurrency']} | {' | '.join(cells)} |")
    return lines


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_report(text: str) -> None:
    current = REPORT.read_text() if REPORT.exists() else f"{BEGIN}\n{END}\n"
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    REPORT.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
