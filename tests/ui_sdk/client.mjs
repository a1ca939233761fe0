// The Vercel AI SDK's own client code against the gateway, driven by tests/e2e/test_ui_sdk.py.
//
//   node client.mjs '<JSON request>'
//
// prints one JSON object: what the SDK made of the gateway's answer. The assertions live in
// pytest; this script only exercises the SDK (no re-implementation of its protocol here):
//
//   chat        DefaultChatTransport.sendMessages, read with readUIMessageStream
//   completion  callCompletionApi, the function behind useCompletion
//   replay      a recorded gateway stream, parsed by ai@5.0.0's own transport and reader
import { readFile } from "node:fs/promises";
import { DefaultChatTransport, callCompletionApi, readUIMessageStream } from "ai";
import * as ai5 from "ai5";

const request = JSON.parse(process.argv[2]);

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
  const transport = new DefaultChatTransport({
    api: `${request.url}/ui/chat`,
    headers: request.headers ?? {},
    body: request.body ?? {},
  });
  let stream;
  try {
    stream = await transport.sendMessages({
      chatId: request.chatId ?? "chat-1",
      messages: request.messages,
      trigger: request.trigger ?? "submit-message",
      messageId: request.messageId,
      abortSignal: undefined,
    });
  } catch (error) {
    return { rejected: String(error.message ?? error) };
  }
  return read({ readUIMessageStream }, stream);
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

const scenarios = { chat, completion, replay };
const outcome = await scenarios[request.scenario]();
process.stdout.write(JSON.stringify(outcome));
