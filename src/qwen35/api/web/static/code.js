// "View code": the exact request of the current settings as curl and as an official-SDK call (openai / anthropic).
// Fields an SDK has no argument for go in `extra_body`, which the SDK merges into the same JSON body, so both
// snippets send byte-for-byte the body the playground sends (the playground's own key is never shown).

const SDK_ARGS = {
  "chat.completions": ["model", "messages", "frequency_penalty", "logprobs", "max_tokens", "presence_penalty", "reasoning_effort",
    "response_format", "seed", "stop", "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p",
    "parallel_tool_calls"],
  responses: ["model", "input", "instructions", "store", "include", "max_output_tokens", "reasoning", "temperature", "text",
    "tool_choice", "tools", "top_logprobs", "top_p", "stream", "parallel_tool_calls"],
  messages: ["model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "thinking", "tool_choice",
    "tools", "top_k", "top_p"],
};

function shellQuote(text) { return `'${text.replace(/'/g, "'\\''")}'`; }

export function curlCode(origin, path, body, api) {
  const auth = api === "messages"
    ? ['-H "x-api-key: $QWEN35_API_KEY"', '-H "anthropic-version: 2023-06-01"']
    : ['-H "Authorization: Bearer $QWEN35_API_KEY"'];
  const lines = [`curl ${origin}${path}`, ...auth, '-H "Content-Type: application/json"'];
  if (body.stream) lines.push("-N");
  lines.push(`-d ${shellQuote(JSON.stringify(body, null, 2))}`);
  return lines.join(" \\\n  ");
}

// JSON value -> Python literal (same structure, True/False/None).
export function pyLiteral(value, indent = 0) {
  const pad = "    ".repeat(indent + 1);
  const end = "    ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => pad + pyLiteral(v, indent + 1)).join(",\n")},\n${end}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${pyLiteral(v, indent + 1)}`).join(",\n")},\n${end}}`;
}

export function pythonCode(origin, body, api) {
  const known = SDK_ARGS[api];
  const args = [];
  const extra = {};
  for (const [name, value] of Object.entries(body)) {
    if (known.includes(name)) args.push(`    ${name}=${pyLiteral(value, 1)},`);
    else extra[name] = value;
  }
  if (Object.keys(extra).length) args.push(`    extra_body=${pyLiteral(extra, 1)},`);
  const call = { "chat.completions": "client.chat.completions.create", responses: "client.responses.create", messages: "client.messages.create" }[api];
  const head = api === "messages"
    ? ["import os", "", "from anthropic import Anthropic", "", `client = Anthropic(base_url=${JSON.stringify(origin)}, api_key=os.environ["QWEN35_API_KEY"])`]
    : ["import os", "", "from openai import OpenAI", "", `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=os.environ["QWEN35_API_KEY"])`];
  const loop = {
    "chat.completions": ["for chunk in result:", "    if chunk.choices and chunk.choices[0].delta.content:", '        print(chunk.choices[0].delta.content, end="", flush=True)'],
    responses: ["for event in result:", '    if event.type == "response.output_text.delta":', '        print(event.delta, end="", flush=True)'],
    messages: ["for event in result:", '    if event.type == "content_block_delta" and event.delta.type == "text_delta":', '        print(event.delta.text, end="", flush=True)'],
  }[api];
  const tail = body.stream ? loop : ["print(result)"];
  return [...head, "", `result = ${call}(`, ...args, ")", ...tail].join("\n");
}
