// A mock OpenAI-style upstream in Node, beside bench/mock_upstream.py (its Python twin).
//
// Node's own `http` server, no dependencies. The request body's model `bench-<chunks>-<delay_ms>`
// says what to stream (64 chunks, no delay, when it names none): the same SSE events, byte for
// byte once de-chunked, as the Python mock: the content chunks, the finish chunk, the usage
// chunk and `data: [DONE]`. What differs is on purpose, the way a Node upstream behaves:
// - one `res.write` per event, so one HTTP chunk per event (the Python mock sends the finish
//   chunk, the usage chunk and [DONE] as one HTTP chunk);
// - Node sends the response head with the first event (the Python mock writes it apart);
// - between content events it yields with setImmediate, or setTimeout(delay) when delay > 0
//   (the Python mock awaits asyncio.sleep(delay), which yields one loop iteration at 0).
//
// Run: node bench/node/mock.mjs PORT   (prints `ready` once it listens)

import http from "node:http";

const MODEL = /"model":\s*"[^"]*?bench-(\d+)-(\d+)"/;
const PREFIX = 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,';
const FINISH = Buffer.from(
  PREFIX + '"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
);
const USAGE = Buffer.from(
  PREFIX +
    '"model":"bench","choices":[],' +
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n',
);
const DONE = Buffer.from("data: [DONE]\n\n");
const HEAD = { "content-type": "text/event-stream", "cache-control": "no-cache" };

// Pre-serialised, as in the Python mock: the mock's cost per event is one write.
const events = [];
function event(index) {
  while (events.length <= index) {
    const i = events.length;
    events.push(
      Buffer.from(
        PREFIX +
          '"model":"bench","choices":[{"index":0,"delta":{"content":"tok' +
          i +
          ' "},"finish_reason":null}]}\n\n',
      ),
    );
  }
  return events[index];
}
event(4096);

function plan(body) {
  const match = MODEL.exec(body);
  return match ? [Number(match[1]), Number(match[2])] : [64, 0];
}

function stream(res, chunks, delay) {
  let closed = false;
  res.on("close", () => {
    closed = true;
  });
  res.writeHead(200, HEAD);
  let index = 0;
  const next = () => {
    if (closed) return;
    if (index === chunks) {
      res.write(FINISH);
      res.write(USAGE);
      res.write(DONE);
      res.end();
      return;
    }
    res.write(event(index));
    index += 1;
    if (index === chunks) next();
    else if (delay > 0) setTimeout(next, delay);
    else setImmediate(next);
  };
  next();
}

function handle(req, res) {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    const [chunks, delay] = plan(Buffer.concat(parts).toString("latin1"));
    stream(res, chunks, delay);
  });
}

const server = http.createServer(handle);
server.keepAliveTimeout = 0; // a load client's idle keep-alive connection stays open
server.listen({ host: "127.0.0.1", port: Number(process.argv[2]), backlog: 16384 }, () => {
  process.stdout.write("ready\n");
});
