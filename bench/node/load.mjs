// A closed-loop streaming load generator in Node, beside bench/loadgen.py (its Python twin).
//
// Node's own HTTP client: an `http.Agent` with keepAlive and one socket per connection.
// Chosen over raw `net` sockets so that HTTP framing and chunked decoding are Node's llhttp
// parser's, not a hand-written one's; what that client costs on its core is measured
// (`cpu_s`, from process.cpuUsage over the timed run) and reported, not guessed.
//
// Each of `concurrency` connections sends one streamed request after another for `seconds`
// seconds. Events are counted as blank lines ("\n\n", also across reads) without parsing JSON;
// each stream's status, event count and terminator are checked, and every fault (an error,
// a non-200, a short stream, a missing terminator, a stream still open at the end) is counted.
// With `ttft_samples`, one connection runs that many streams one after another instead and
// reports the time from sending each request to its first body bytes.
//
// Run: node bench/node/load.mjs '<json>'   (port, path, body, headers, terminator, events,
// and concurrency + seconds, or ttft_samples). It prints one JSON line of results.

import http from "node:http";

const GRACE_MS = 10_000; // after the deadline, a stream still open is a fault, not a wait

const spec = JSON.parse(process.argv[2]);
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

// Blank lines in one read, `previous` being the last byte of the read before.
function countEvents(previous, part) {
  let count = previous === 10 && part[0] === 10 ? 1 : 0;
  let at = part.indexOf("\n\n");
  while (at >= 0) {
    count += 1;
    at = part.indexOf("\n\n", at + 2);
  }
  return count;
}

function fault(kind, status) {
  results[kind] += 1;
  if (status !== undefined) results.statuses[status] = (results.statuses[status] ?? 0) + 1;
}

// One stream: resolves when it has ended, however it ended (faults are counted here).
function once(agent, onFirst) {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (kind, status) => {
      if (settled) return;
      settled = true;
      open.delete(request);
      if (kind) fault(kind, status);
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
        let first = true;
        response.on("data", (part) => {
          if (first) {
            first = false;
            onFirst?.();
          }
          events += countEvents(last, part);
          last = part[part.length - 1];
          // Only the last reads are kept: enough to find the terminator in the last event.
          tail = part.length >= 256 ? part : Buffer.concat([tail, part]).subarray(-256);
        });
        response.on("end", () => {
          results.streams += 1;
          results.events += events;
          if (response.statusCode !== 200) settle("errors", response.statusCode);
          else if (events < spec.events) settle("short");
          else if (!tail.includes(terminator)) settle("unterminated");
          else settle(null);
        });
        response.on("error", () => settle("errors"));
        response.on("close", () => response.complete || settle("errors"));
      },
    );
    request.on("error", () => settle("errors"));
    request.settle = settle;
    open.add(request);
    request.end(body);
  });
}

async function closedLoop(concurrency, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) await once(agent);
  };
  const guard = setTimeout(abandonOpen, seconds * 1000 + GRACE_MS);
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const used = process.cpuUsage(cpu);
  results.seconds = (performance.now() - started) / 1000;
  results.cpu_s = (used.user + used.system) / 1e6;
  clearTimeout(guard);
  agent.destroy();
}

async function ttft(samples) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const guard = setTimeout(abandonOpen, samples * 1000 + GRACE_MS);
  for (let i = 0; i < samples; i += 1) {
    const sent = performance.now();
    await once(agent, () => results.ttft_ms.push(performance.now() - sent));
  }
  clearTimeout(guard);
  agent.destroy();
}

function abandonOpen() {
  for (const request of open) {
    request.settle("unfinished");
    request.destroy();
  }
}

if (spec.ttft_samples) await ttft(spec.ttft_samples);
else await closedLoop(spec.concurrency, spec.seconds);
process.stdout.write(JSON.stringify(results) + "\n");
