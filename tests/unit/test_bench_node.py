"""The Node harness (bench/node/, bench/node_harness.py): its mock sends the Python mock's
events, and its load client counts events and faults exactly."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from bench import mock_upstream
from bench.loadgen import Target
from bench.node_harness import NODE_DIR, node_spec, parse_node_load
from bench.run import free_port

NODE = shutil.which("node") or "node"  # CI has Node (.ci/required-tools): missing it fails
BODY = b"data: {}\n\ndata: {}\n\ndata: [DONE]\n\n"


def dechunk(raw: bytes) -> list[bytes]:
    """A chunked body's chunks, in order, up to the last (empty) one."""
    chunks = []
    while True:
        size_end = raw.index(b"\r\n")
        size = int(raw[:size_end], 16)
        if size == 0:
            return chunks
        chunks.append(raw[size_end + 2 : size_end + 2 + size])
        raw = raw[size_end + 4 + size :]


def python_mock_body(chunks: int) -> bytes:
    return b"".join(dechunk(b"".join(mock_upstream.EVENTS[:chunks]) + mock_upstream.TAIL))


async def test_the_node_mock_streams_the_python_mocks_events_one_chunk_each() -> None:
    port = free_port()
    mock = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "mock.mjs"), str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert mock.stdout is not None
        assert await mock.stdout.readline() == b"ready\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"model": "bench-3-0", "stream": true}'
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%b"
            % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        raw = await reader.readuntil(b"\r\n0\r\n\r\n")
        writer.close()
        await writer.wait_closed()
    finally:
        mock.terminate()
        await mock.wait()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: text/event-stream" in head.lower()
    chunks = dechunk(raw)
    assert b"".join(chunks) == python_mock_body(3)
    # One HTTP chunk per event: 3 content chunks, the finish chunk, the usage chunk, [DONE].
    assert len(chunks) == 6
    assert all(chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1 for chunk in chunks)


Answer = Callable[[int], bytes]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces if piece)


def streaming(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body


@asynccontextmanager
async def serve(answer: Answer) -> AsyncIterator[int]:
    """A scripted upstream: request number i gets `answer(i)`, and b"" closes the connection
    (after what was sent, if anything)."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                reply = answer(count)
                count += 1
                writer.write(reply.removesuffix(b"<cut>"))
                await writer.drain()
                if reply.endswith(b"<cut>"):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


CLIENTS = pytest.mark.parametrize("client", ["net", "agent"])


async def load(port: int, samples: int, client: str, stall_ms: int = 10_000) -> str:
    target = Target("t", port, "/v1/chat/completions", b"{}", b"[DONE]", 3)
    spec = json.dumps(
        {**node_spec(target), "client": client, "ttft_samples": samples, "stall_ms": stall_ms}
    )
    process = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "load.mjs"), spec, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip()


@CLIENTS
async def test_the_node_load_client_counts_events_cut_at_every_offset(client: str) -> None:
    def answer(cut: int) -> bytes:  # the body in two HTTP chunks, split at `cut`
        return streaming(chunked(BODY[:cut], BODY[cut:]) + b"0\r\n\r\n")

    async with serve(answer) as port:
        result = json.loads(await load(port, len(BODY), client))
    assert result["streams"] == len(BODY)
    assert result["events"] == 3 * len(BODY)
    assert parse_node_load(json.dumps(result)).faults == 0
    assert len(result["ttft_ms"]) == len(BODY)


@pytest.mark.parametrize(
    ("reply", "fault"),
    [
        (streaming(chunked(b"data: {}\n\ndata: [DONE]\n\n") + b"0\r\n\r\n"), "short"),
        (streaming(chunked(b"data: {}\n\n" * 3) + b"0\r\n\r\n"), "unterminated"),
        (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}", "errors"),
        (streaming(chunked(b"data: {}\n\n")) + b"<cut>", "errors"),  # a reset mid-body
        (b"<cut>", "errors"),  # closed before any answer
    ],
    ids=["short", "unterminated", "status 500", "reset mid-body", "closed before answering"],
)
@CLIENTS
async def test_the_node_load_client_counts_each_fault(
    reply: bytes, fault: str, client: str
) -> None:
    def answer(index: int) -> bytes:  # the faulty reply between two good ones
        return reply if index == 1 else streaming(chunked(BODY) + b"0\r\n\r\n")

    async with serve(answer) as port:
        line = await load(port, 3, client)
    result = json.loads(line)
    assert result[fault] == 1
    loaded = parse_node_load(line)
    assert loaded.faults == 1
    assert fault in loaded.detail
    assert result["events"] >= 6  # both good streams were read in full


@CLIENTS
async def test_a_stalled_stream_is_counted_unfinished_and_the_run_goes_on(client: str) -> None:
    stalled = asyncio.Event()

    def answer(index: int) -> bytes:  # the second stream stops after its first event
        if index == 1:
            stalled.set()
            return streaming(chunked(b"data: {}\n\n"))
        return streaming(chunked(BODY) + b"0\r\n\r\n")

    async with serve(answer) as port:
        line = await load(port, 3, client, stall_ms=100)
    assert stalled.is_set()
    result = json.loads(line)
    assert (result["streams"], result["unfinished"]) == (2, 1)
    assert parse_node_load(line).faults == 1


def test_a_targets_header_lines_reach_the_node_client_as_headers() -> None:
    target = Target("p", 1, "/x", b"{}", b"[DONE]", 3, headers=b"a: 1\r\nx-b: c:d\r\n")
    assert node_spec(target)["headers"] == {"a": "1", "x-b": "c:d"}


# Feeds a whole response to bench/node/reader.mjs cut in two at every offset, then one byte a
# read, and prints what each reading found.
READ_EVERY_CUT = """
import { ResponseReader } from "./bench/node/reader.mjs";
const raw = Buffer.from(process.argv[1], "latin1");
const cuts = [...Array(raw.length + 1).keys()].map((at) => [raw.subarray(0, at), raw.subarray(at)]);
cuts.push([...raw].map((byte) => Buffer.from([byte])));
const found = cuts.map((reads) => {
  const reader = new ResponseReader();
  let early = false; // done before the response's last byte was read
  for (const data of reads) if (data.length) (early ||= reader.done), reader.feed(data);
  return [reader.status, reader.events, reader.done && !early, reader.tail.toString("latin1")];
});
process.stdout.write(JSON.stringify(found));
"""


@pytest.mark.parametrize(
    "response",
    [
        streaming(chunked(*BODY.partition(b"\n\n")) + b"0\r\n\r\n"),
        streaming(chunked(BODY[:9], BODY[9:]) + b"0\r\n\r\n"),  # a blank line across chunks
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(BODY), BODY),
    ],
    ids=["chunked", "blank line across chunks", "content-length"],
)
def test_the_raw_socket_reader_reads_a_response_cut_anywhere(response: bytes) -> None:
    found = subprocess.run(
        [NODE, "--input-type=module", "-e", READ_EVERY_CUT, response.decode("latin1")],
        cwd=NODE_DIR.parents[1],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    readings = json.loads(found)
    assert len(readings) == len(response) + 2
    for status, events, done, tail in readings:
        assert (status, events, done) == (200, 3, True)
        assert tail.endswith("data: [DONE]\n\n")
