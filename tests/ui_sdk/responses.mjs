// The openai Node SDK's Responses client against the gateway, driven by
// tests/e2e/test_responses_node.py.
//
//   node responses.mjs '<JSON request>'
//
// prints one JSON line: what the SDK made of the gateway's answers. The assertions live in
// pytest; this script only exercises the SDK:
//
//   text     responses.stream: the text deltas and the final response
//   tools    responses.create with a function tool, then the call's output sent back with
//            previous_response_id (not streamed)
//   failure  responses.create({stream: true}): the event types it yields
//   foreign  responses.create with another key's previous_response_id: the error it raises
import OpenAI from "openai";

const request = JSON.parse(process.argv[2]);
const client = (key) =>
  new OpenAI({ baseURL: `${request.url}/v1`, apiKey: key ?? request.key, maxRetries: 0 });
const TOOL = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } } },
  strict: false,
};

async function text() {
  const stream = client().responses.stream({ model: "m", input: "hi" });
  const deltas = [];
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") deltas.push(event.delta);
  }
  const final = await stream.finalResponse();
  return { deltas, text: final.output_text, usage: final.usage };
}

async function tools() {
  const first = await client().responses.create({ model: "m", input: "Weather?", tools: [TOOL] });
  const call = first.output.find((item) => item.type === "function_call");
  const second = await client().responses.create({
    model: "m",
    previous_response_id: first.id,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
    tools: [TOOL],
  });
  return { call: { name: call.name, arguments: call.arguments }, text: second.output_text };
}

async function failure() {
  const stream = await client().responses.create({ model: "m", input: "hi", stream: true });
  const types = [];
  for await (const event of stream) types.push(event.type);
  return { types };
}

async function foreign() {
  try {
    await client(request.other_key).responses.create({
      model: "m",
      input: "more",
      previous_response_id: request.previous,
    });
    return { raised: false };
  } catch (error) {
    return { raised: true, status: error.status, code: error.code, param: error.param };
  }
}

const scenarios = { text, tools, failure, foreign };
process.stdout.write(JSON.stringify(await scenarios[request.scenario]()) + "\n");
