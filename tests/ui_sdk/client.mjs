// The Vercel AI SDK's own client code against the gateway, driven by tests/e2e/test_ui_sdk.py.
//
//   node client.mjs '<JSON request>'
//
// prints one JSON line: what the SDK made of the gateway's answer. The assertions live in
// pytest; this script only exercises the SDK (no re-implementation of its protocol here):
//
//   chat        DefaultChatTransport.sendMessages, read with readUIMessageStream
//   resume      a request aborted after its first delta, then reconnectToStream (what
//               `useChat({resume: true})` does after a reload), then once more after the end
//   stop        two readers of one chat (the request and a reconnection), then the stop route
//   completion  callCompletionApi, the function behind useCompletion
//   replay      a recorded gateway stream, parsed by ai@5.0.0's own transport and reader
//
// Where the test must act at a precise point, the script prints `WAIT <label>` and goes on
// once pytest answers with a line on stdin.
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { DefaultChatTransport, callCompletionApi, readUIMessageStream } from "ai";
import * as ai5 from "ai5";

const request = JSON.parse(process.argv[2]);
const chatId = request.chatId ?? "chat-1";
let stdin = null;

async function pause(label) {
  stdin = stdin ?? createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write(`WAIT ${label}\n`);
  await stdin.next();
}

function transportFor() {
  return new DefaultChatTransport({
    api: `${request.url}/ui/chat`,
    headers: request.headers ?? {},
    body: request.body ?? {},
  });
}

function send(transport, abortSignal) {
  return transport.sendMessages({
    chatId,
    messages: request.messages,
    trigger: request.trigger ?? "submit-message",
    messageId: request.messageId,
    abortSignal,
  });
}

// Reads chunks up to the first text-delta; returns them, and the stream of what follows them
// (those chunks first), still unread.
async function untilFirstDelta(stream) {
  const reader = stream.getReader();
  const seen = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    seen.push(value);
    if (value.type === "text-delta") break;
  }
  const rest = new ReadableStream({
    start(controller) {
      for (const chunk of seen) controller.enqueue(chunk);
    },
    async pull(controller) {
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { seen, reader, rest };
}

// Reads a UI message stream as useChat does, keeping every snapshot's final state, the
// chunk types in order, and every error the SDK reported.
async function read(sdk, stream) {
  const [forChunks, forMessages] = stream.tee();
  const chunks = [];
  const collecting = (async () => {
    for await (const chunk of forChunks) chunks.push(chunk);
  })();
  const errors = [];
  let message = null;
  let threw = null;
  try {
    for await (const snapshot of sdk.readUIMessageStream({
      stream: forMessages,
      onError: (error) => errors.push(String(error.message ?? error)),
    })) {
      message = snapshot;
    }
  } catch (error) {
    threw = String(error.message ?? error);
  }
  await collecting.catch((error) => {
    threw = threw ?? String(error.message ?? error);
  });
  return { chunks, message, errors, threw };
}

async function chat() {
  let stream;
  try {
    stream = await send(transportFor(), undefined);
  } catch (error) {
    return { rejected: String(error.message ?? error) };
  }
  return read({ readUIMessageStream }, stream);
}

async function resume() {
  const transport = transportFor();
  const aborter = new AbortController();
  const { seen, reader } = await untilFirstDelta(await send(transport, aborter.signal));
  aborter.abort(); // as a reload does: the request is gone
  await reader.cancel().catch(() => {});
  const again = await transport.reconnectToStream({ chatId });
  if (again === null) return { first: seen, resumed: null };
  await pause("attached");
  const resumed = await read({ readUIMessageStream }, again);
  const afterEnd = await transport.reconnectToStream({ chatId });
  return { first: seen, resumed, afterEnd: afterEnd === null ? null : "a stream" };
}

async function stop() {
  const transport = transportFor();
  const first = await untilFirstDelta(await send(transport, undefined));
  const second = await untilFirstDelta(await transport.reconnectToStream({ chatId }));
  const stopped = await fetch(`${request.url}/ui/chat/${encodeURIComponent(chatId)}/stop`, {
    method: "POST",
    headers: request.headers ?? {},
  });
  const readers = [
    await read({ readUIMessageStream }, first.rest),
    await read({ readUIMessageStream }, second.rest),
  ];
  const afterStop = await transport.reconnectToStream({ chatId });
  return { stopStatus: stopped.status, readers, afterStop: afterStop === null ? null : "a stream" };
}

async function completion() {
  let text = null;
  let error = null;
  const result = await callCompletionApi({
    api: `${request.url}/ui/completion`,
    prompt: request.prompt,
    headers: request.headers ?? {},
    body: request.body ?? {},
    credentials: undefined,
    setCompletion: (value) => {
      text = value;
    },
    setLoading: () => {},
    setError: (value) => {
      error = value ? String(value.message ?? value) : null;
    },
    setAbortController: () => {},
    onError: (value) => {
      error = String(value.message ?? value);
    },
  });
  return { result: result ?? null, text, error };
}

async function replay() {
  const recorded = await readFile(request.file);
  const transport = new ai5.DefaultChatTransport({
    api: "http://recorded.invalid/ui/chat",
    fetch: async () =>
      new Response(recorded, {
        headers: { "content-type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" },
      }),
  });
  const stream = await transport.sendMessages({
    chatId: "recorded",
    messages: [],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  return read(ai5, stream);
}

const scenarios = { chat, resume, stop, completion, replay };
const outcome = await scenarios[request.scenario]();
process.stdout.write(`${JSON.stringify(outcome)}\n`);
process.exit(0); // stdin may still be open (the readline of `pause`)
