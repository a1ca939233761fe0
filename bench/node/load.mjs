// A closed-loop streaming load generator in Node, beside bench/loadgen.py (its Python twin).
//
// Two clients, `client` in the spec choosing:
// - "net" (the default): raw `net` sockets, one request written per stream and the response
//   read by bench/node/reader.mjs (status, chunked framing, blank lines), as bench/loadgen.py
//   reads it. The default because the load client shares its core with the mock: Node's
//   `http` client spends about twice the CPU per stream (measured: `cpu_s`), enough to make
//   the harness the limit of the gateway's rows;
// - "agent": Node's own `http` client (an `http.Agent` with keepAlive, one socket per
//   connection, llhttp parsing), what a Node program would use; kept to measure that cost.
//
// Each of `concurrency` connections sends one streamed request after another for `seconds`
// seconds. Events are counted as blank lines ("\n\n", also across reads) without parsing JSON;
// each stream's status, event count and terminator are checked, and every fault (an error,
// a non-200, a short stream, a missing terminator, a stream stalled for 10 s) is counted.
// With `ttft_samples`, one connection runs that many streams one after another instead and
// reports the time from sending each request to its first body bytes.
//
// Run: node bench/node/load.mjs '<json>'   (port, path, body, headers, terminator, events,
// and concurrency + seconds, or ttft_samples; stall_ms). It prints one JSON line of results.

import http from "node:http";
import net from "node:net";

import { countEvents, ResponseReader } from "./reader.mjs";

const spec = JSON.parse(process.argv[2]);
// A stream that receives nothing for this long is stalled: a fault, and abandoned.
const STALL_MS = spec.stall_ms ?? 10_000;
const body = Buffer.from(spec.body, "latin1");
const terminator = Buffer.from(spec.terminator, "latin1");
const results = {
  streams: 0,
  events: 0,
  errors: 0,
  short: 0,
  unterminated: 0,
  unfinished: 0,
  statuses: {},
  ttft_ms: [],
};
const open = new Set();

function fault(kind, status) {
  results[kind] += 1;
  if (status !== undefined) results.statuses[status] = (results.statuses[status] ?? 0) + 1;
}

// A whole response's verdict: null when it is a complete stream.
function verdict(status, events, tail) {
  if (status !== 200) return "errors";
  if (events < spec.events) return "short";
  return tail.includes(terminator) ? null : "unterminated";
}

function ended(status, events, tail) {
  results.streams += 1;
  results.events += events;
  const kind = verdict(status, events, tail);
  if (kind) fault(kind, status === 200 ? undefined : status);
}

// The `net` client: one keep-alive socket; `stream()` resolves when its response has ended,
// however it ended (faults are counted here); a closed socket is replaced by the next call.
function netClient() {
  const request = Buffer.concat([
    Buffer.from(
      `POST ${spec.path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
        "accept: text/event-stream\r\n" +
        Object.entries(spec.headers)
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join("") +
        `content-length: ${body.length}\r\n\r\n`,
      "latin1",
    ),
    body,
  ]);
  const reader = new ResponseReader();
  let socket = null;
  let waiting = null;
  const finish = (kind) => {
    const resolve = waiting;
    if (resolve === null) return;
    waiting = null;
    open.delete(connection);
    if (kind) fault(kind);
    else ended(reader.status, reader.events, reader.tail);
    resolve();
  };
  const connect = () => {
    const made = net.connect({ host: "127.0.0.1", port: spec.port, noDelay: true });
    made.on("data", (data) => {
      connection.reads += 1;
      if (waiting === null || socket !== made) return;
      reader.feed(data);
      if (reader.malformed) finish("errors");
      else if (reader.done) finish(null);
    });
    made.on("error", () => {});
    made.on("close", () => {
      if (socket !== made) return; // an abandoned socket: its stream is already counted
      socket = null;
      finish("errors");
    });
    return made;
  };
  const connection = {
    reads: 0, // reads so far, all streams: what shows a stream is not stalled
    stream(onFirst) {
      return new Promise((resolve) => {
        socket ??= connect();
        reader.reset();
        waiting = () => {
          if (onFirst && reader.firstAt) onFirst(reader.firstAt);
          resolve();
        };
        open.add(connection);
        socket.write(request);
      });
    },
    abandon() {
      const stalled = socket;
      socket = null;
      finish("unfinished");
      stalled?.destroy();
    },
    close() {
      socket?.destroy();
    },
  };
  return connection;
}

// The `http` client: Node's http.Agent with keepAlive.
function agentClient() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let current = null;
  const connection = {
    reads: 0, // reads so far, all streams: what shows a stream is not stalled
    stream(onFirst) {
      return new Promise((resolve) => {
        let settled = false;
        let firstAt = 0;
        const settle = (kind, report) => {
          if (settled) return;
          settled = true;
          open.delete(connection);
          if (kind) fault(kind);
          else report();
          if (onFirst && firstAt) onFirst(firstAt);
          resolve();
        };
        const request = http.request(
          {
            agent,
            host: "127.0.0.1",
            port: spec.port,
            method: "POST",
            path: spec.path,
            headers: {
              ...spec.headers,
              "content-type": "application/json",
              accept: "text/event-stream",
              "content-length": body.length,
            },
          },
          (response) => {
            let events = 0;
            let last = 0;
            let tail = Buffer.alloc(0);
            response.on("data", (part) => {
              connection.reads += 1;
              if (firstAt === 0) firstAt = performance.now();
              events += countEvents(last, part);
              last = part[part.length - 1];
              tail = part.length >= 256 ? part : Buffer.concat([tail, part]).subarray(-256);
            });
            response.on("end", () =>
              settle(null, () => ended(response.statusCode, events, tail)),
            );
            response.on("error", () => settle("errors"));
            response.on("close", () => response.complete || settle("errors"));
          },
        );
        request.on("error", () => settle("errors"));
        current = { settle, request };
        open.add(connection);
        request.end(body);
      });
    },
    abandon() {
      current?.settle("unfinished");
      current?.request.destroy();
    },
    close() {
      agent.destroy();
    },
  };
  return connection;
}

const CLIENTS = { net: netClient, agent: agentClient };

async function closedLoop(client, concurrency, seconds) {
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    const connection = client();
    while (performance.now() < deadline) await connection.stream();
    connection.close();
  };
  const guard = watchStalls();
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const used = process.cpuUsage(cpu);
  results.seconds = (performance.now() - started) / 1000;
  results.cpu_s = (used.user + used.system) / 1e6;
  clearInterval(guard);
}

async function ttft(client, samples) {
  const connection = client();
  const guard = watchStalls();
  for (let i = 0; i < samples; i += 1) {
    const sent = performance.now();
    await connection.stream((firstAt) => results.ttft_ms.push(firstAt - sent));
  }
  clearInterval(guard);
  connection.close();
}

// Every STALL_MS, abandon each open stream whose connection has read nothing since the last look.
function watchStalls() {
  const seen = new Map();
  return setInterval(() => {
    for (const connection of open) {
      if (seen.get(connection) === connection.reads) connection.abandon();
      else seen.set(connection, connection.reads);
    }
  }, STALL_MS);
}

const client = CLIENTS[spec.client ?? "net"];
if (spec.ttft_samples) await ttft(client, spec.ttft_samples);
else await closedLoop(client, spec.concurrency, spec.seconds);
process.stdout.write(JSON.stringify(results) + "\n");
