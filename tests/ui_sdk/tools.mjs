// Tool round trips through the gateway with the official Node clients, driven by
// tests/e2e/test_node_tools.py:
//
//   node tools.mjs '<JSON requests>'     requests: [{client, url, model}, ...]
//
//   openai      the `openai` package: chat.completions.stream with a tool, then the results
//   anthropic   the `@anthropic-ai/sdk` package: messages.stream with a tool, then the results
//   ai          the AI SDK's DefaultChatTransport and readUIMessageStream, as useChat does with
//               a client-side tool: the calls come as tool parts, the "browser" sets their
//               outputs and sends the message back
//   agents      the OpenAI Agents SDK (`@openai/agents`): an agent with a function tool, run
//               over the Responses API (its default), which calls the tool and answers
//
// The requests run one after another in this one process (loading the four SDKs is most of a
// run's time); each prints one JSON line, in order: the calls the client saw and the final
// answer's text, or the error it ended with. The assertions live in pytest.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { Agent, OpenAIProvider, Runner, setTracingDisabled, tool } from "@openai/agents";
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { z } from "zod";

const requests = JSON.parse(process.argv[2]);
const WEATHER = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
};
const answerFor = (input) => `18C ${input.city}`;
const question = "Weather in Paris and Rome?";

async function viaOpenAI(request) {
  const client = new OpenAI({ baseURL: `${request.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const tools = [{ type: "function", function: { name: "weather", parameters: WEATHER } }];
  const messages = [{ role: "user", content: question }];
  const stream = client.chat.completions.stream({ model: request.model, messages, tools });
  const first = (await stream.finalChatCompletion()).choices[0];
  const calls = first.message.tool_calls ?? [];
  messages.push(first.message);
  for (const call of calls) {
    const input = JSON.parse(call.function.arguments);
    messages.push({ role: "tool", tool_call_id: call.id, content: answerFor(input) });
  }
  const second = await client.chat.completions.create({ model: request.model, messages, tools });
  return {
    finish: first.finish_reason,
    calls: calls.map((c) => JSON.parse(c.function.arguments)),
    text: second.choices[0].message.content,
  };
}

async function viaAnthropic(request) {
  const client = new Anthropic({ baseURL: request.url, apiKey: "unused", maxRetries: 0 });
  const tools = [{ name: "weather", description: "The weather", input_schema: WEATHER }];
  const messages = [{ role: "user", content: question }];
  const params = { model: request.model, max_tokens: 256, tools };
  const first = await client.messages.stream({ ...params, messages }).finalMessage();
  const uses = first.content.filter((block) => block.type === "tool_use");
  messages.push({ role: "assistant", content: first.content });
  messages.push({
    role: "user",
    content: uses.map((use) => ({
      type: "tool_result",
      tool_use_id: use.id,
      content: answerFor(use.input),
    })),
  });
  const second = await client.messages.create({ ...params, messages });
  return {
    finish: first.stop_reason,
    calls: uses.map((use) => use.input),
    text: second.content.map((block) => block.text ?? "").join(""),
  };
}

async function lastMessage(stream) {
  let last = null;
  for await (const message of readUIMessageStream({ stream })) last = message;
  return last;
}

async function viaAISDK(request) {
  const transport = new DefaultChatTransport({
    api: `${request.url}/ui/chat`,
    body: {
      model: request.model,
      tools: { weather: { description: "The weather", inputSchema: WEATHER } },
    },
  });
  const user = { id: "u1", role: "user", parts: [{ type: "text", text: question }] };
  const send = async (messages) =>
    lastMessage(
      await transport.sendMessages({
        chatId: "chat-tools",
        messages,
        trigger: "submit-message",
        messageId: undefined,
        abortSignal: undefined,
      }),
    );
  const first = await send([user]);
  const toolParts = first.parts.filter((part) => part.type === "tool-weather");
  // The browser runs the tool (addToolResult): each part gets its output.
  const answered = {
    ...first,
    parts: first.parts.map((part) =>
      part.type === "tool-weather"
        ? { ...part, state: "output-available", output: answerFor(part.input) }
        : part,
    ),
  };
  const second = await send([user, answered]);
  return {
    finish: toolParts.every((part) => part.state === "input-available") ? "tool-calls" : "?",
    calls: toolParts.map((part) => part.input),
    reasoning: first.parts.filter((part) => part.type === "reasoning").length,
    text: second.parts
      .filter((part) => part.type === "text")
      .map((part) => part.text)
      .join(""),
  };
}

async function viaAgents(request) {
  setTracingDisabled(true); // no export to OpenAI's tracing endpoint: offline
  // A provider of its own for this run: the default one keeps the first client it was given.
  const client = new OpenAI({ baseURL: `${request.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const runner = new Runner({ modelProvider: new OpenAIProvider({ openAIClient: client }) });
  const seen = [];
  const weather = tool({
    name: "weather",
    description: "The weather",
    parameters: z.object({ city: z.string() }),
    execute: async (input) => {
      seen.push(input);
      return answerFor(input);
    },
  });
  const agent = new Agent({ name: "Forecaster", model: request.model, tools: [weather] });
  const result = await runner.run(agent, question);
  return { finish: "tool_calls", calls: seen, text: result.finalOutput };
}

const clients = {
  openai: viaOpenAI,
  anthropic: viaAnthropic,
  ai: viaAISDK,
  agents: viaAgents,
};
for (const request of requests) {
  let result;
  try {
    result = await clients[request.client](request);
  } catch (error) {
    result = { error: String(error?.stack ?? error) };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}
