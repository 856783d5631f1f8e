// The three API families the playground speaks: how one conversation + the settings become a request body for
// /v1/chat/completions, /v1/responses or /v1/messages, and how each family's stream becomes the same small events
// ({type: "reasoning" | "text" | "tool" | "search" | "citation" | "usage" | "finish" | "error"}). Only parameters the user set are sent,
// so "view code" shows the request exactly as the server gets it.

const SAMPLERS = ["temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "seed"];
export const FAMILIES = {
  "chat.completions": { path: "/v1/chat/completions", label: "Chat Completions" },
  responses: { path: "/v1/responses", label: "Responses" },
  messages: { path: "/v1/messages", label: "Anthropic Messages" },
};
const DEFAULT_MAX_TOKENS = 4096; // Messages requires max_tokens; the product default elsewhere

function schemaFormat(settings) {
  return { name: "answer", schema: settings.schema, strict: true };
}

// Attachments of a user message (m.media: [{ kind: "image" | "video", url: data URL }]) per API family.
function chatContent(m) {
  if (!m.media?.length) return m.content;
  const parts = m.media.map((a) => (a.kind === "video"
    ? { type: "video_url", video_url: { url: a.url } } : { type: "image_url", image_url: { url: a.url } }));
  return [...parts, { type: "text", text: m.content }];
}

function responsesContent(m) {
  if (!m.media?.length) return m.content;
  const parts = m.media.map((a) => (a.kind === "video"
    ? { type: "input_video", video_url: a.url } : { type: "input_image", image_url: a.url }));
  return [...parts, { type: "input_text", text: m.content }];
}

function anthropicImage(a) {
  const [header, data] = a.url.split(",", 2);
  return { type: "image", source: { type: "base64", media_type: header.slice(5).split(";")[0], data } };
}

function chatMessages(settings, messages) {
  const out = settings.system ? [{ role: "system", content: settings.system }] : [];
  for (const m of messages) {
    if (m.role === "user") out.push({ role: "user", content: chatContent(m) });
    else if (m.role === "tool") out.push({ role: "tool", tool_call_id: m.toolCallId, content: m.content });
    else {
      const msg = { role: "assistant", content: m.content || "" };
      if (m.toolCalls?.length) {
        msg.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
      }
      out.push(msg);
    }
  }
  return out;
}

function responsesInput(messages) {
  const out = [];
  for (const m of messages) {
    if (m.role === "user") out.push({ role: "user", content: responsesContent(m) });
    else if (m.role === "tool") out.push({ type: "function_call_output", call_id: m.toolCallId, output: m.content });
    else {
      if (m.content) out.push({ role: "assistant", content: m.content });
      for (const c of m.toolCalls || []) out.push({ type: "function_call", call_id: c.id, name: c.name, arguments: c.arguments });
    }
  }
  return out;
}

function anthropicMessages(messages) {
  const out = [];
  const push = (role, block) => {
    const last = out[out.length - 1];
    if (last && last.role === role) last.content.push(block);
    else out.push({ role, content: [block] });
  };
  for (const m of messages) {
    if (m.role === "user") {
      // Anthropic Messages has no video block: images only there
      for (const a of m.media || []) if (a.kind === "image") push("user", anthropicImage(a));
      push("user", { type: "text", text: m.content });
    }
    else if (m.role === "tool") push("user", { type: "tool_result", tool_use_id: m.toolCallId, content: m.content });
    else {
      // a thinking block is echoed (with its signature) only where Anthropic needs it: before tool use
      if (m.toolCalls?.length && m.reasoning && m.signature) push("assistant", { type: "thinking", thinking: m.reasoning, signature: m.signature });
      if (m.content) push("assistant", { type: "text", text: m.content });
      for (const c of m.toolCalls || []) {
        let input = {};
        try { input = JSON.parse(c.arguments || "{}"); } catch { input = {}; }
        push("assistant", { type: "tool_use", id: c.id, name: c.name, input });
      }
    }
  }
  return out;
}

// settings: {api, model, system, params, stop, reasoning, thinkingBudget, logprobs, topLogprobs, format, schema,
//            tools (chat format), toolChoice, parallelTools, stream}
export function buildRequest(settings, messages) {
  const p = settings.params;
  const body = { model: settings.model };
  const api = settings.api;
  if (api === "chat.completions") body.messages = chatMessages(settings, messages);
  else if (api === "responses") {
    if (settings.system) body.instructions = settings.system;
    body.input = responsesInput(messages);
    body.store = false;
  } else {
    body.max_tokens = p.max_tokens ?? DEFAULT_MAX_TOKENS;
    if (settings.system) body.system = settings.system;
    body.messages = anthropicMessages(messages);
  }
  for (const name of SAMPLERS) if (p[name] !== undefined) body[name] = p[name];
  if (p.max_tokens !== undefined) {
    if (api === "chat.completions") body.max_tokens = p.max_tokens;
    if (api === "responses") body.max_output_tokens = p.max_tokens;
  }
  if (settings.stop.length) body[api === "messages" ? "stop_sequences" : "stop"] = settings.stop;
  // thinking: the family's own spelling where it has one, the product's extensions otherwise
  const r = settings.reasoning;
  if (r === "budget") {
    if (api === "messages") body.thinking = { type: "enabled", budget_tokens: settings.thinkingBudget };
    else body.thinking_budget = settings.thinkingBudget;
  } else if (r === "none") {
    if (api === "messages") body.thinking = { type: "disabled" };
    else if (api === "responses") body.reasoning = { effort: "none" };
    else body.reasoning_effort = "none";
  } else if (r) {
    if (api === "messages") body.output_config = { effort: r };
    else if (api === "responses") body.reasoning = { effort: r };
    else body.reasoning_effort = r;
  }
  if (settings.logprobs && api !== "messages") {
    if (api === "chat.completions") body.logprobs = true;
    else body.include = ["message.output_text.logprobs"];
    body.top_logprobs = settings.topLogprobs ?? 0;
  }
  if (settings.format === "json_object") {
    if (api === "chat.completions") body.response_format = { type: "json_object" };
    else if (api === "responses") body.text = { format: { type: "json_object" } };
    else body.output_config = { ...(body.output_config || {}), format: { type: "json_schema", schema: { type: "object" } } };
  } else if (settings.format === "json_schema") {
    if (api === "chat.completions") body.response_format = { type: "json_schema", json_schema: schemaFormat(settings) };
    else if (api === "responses") body.text = { format: { type: "json_schema", ...schemaFormat(settings) } };
    else body.output_config = { ...(body.output_config || {}), format: { type: "json_schema", schema: settings.schema } };
  }
  if (settings.tools.length) {
    const fns = settings.tools.map((t) => t.function || t);
    if (api === "chat.completions") body.tools = fns.map((f) => ({ type: "function", function: f }));
    else if (api === "responses") body.tools = fns.map((f) => ({ type: "function", ...f }));
    else body.tools = fns.map((f) => ({ name: f.name, description: f.description, input_schema: f.parameters || { type: "object" } }));
  }
  if (settings.tools.length || settings.webSearch) {
    // "required" with web search only: every round searches until the server's limit, then the answer
    const choice = settings.toolChoice;
    const single = settings.parallelTools === false;
    if (api === "messages") {
      if ((choice && choice !== "auto") || single) {
        body.tool_choice = { type: choice === "required" ? "any" : choice || "auto" };
        if (single && body.tool_choice.type !== "none") body.tool_choice.disable_parallel_tool_use = true;
      }
    } else {
      if (choice && choice !== "auto") body.tool_choice = choice;
      if (single) body.parallel_tool_calls = false;
    }
  }
  if (settings.webSearch) {
    // the server runs the searches; each family's own way to ask for them
    if (api === "chat.completions") body.web_search_options = {};
    else if (api === "responses") {
      body.tools = [...(body.tools || []), { type: "web_search" }];
      body.include = [...(body.include || []), "web_search_call.action.sources"];
    } else body.tools = [...(body.tools || []), { type: "web_search_20250305", name: "web_search" }];
  }
  body.stream = settings.stream;
  if (settings.stream && api === "chat.completions") body.stream_options = { include_usage: true };
  return { path: FAMILIES[api].path, body };
}

function normalizeUsage(api, u) {
  if (!u) return null;
  const searches = u.server_tool_use?.web_search_requests;
  const base = normalizeTokens(api, u);
  return searches === undefined ? base : { ...base, searches };
}

const sources = (list) => (list || []).map((s) => ({ url: s.url, title: s.title || s.url }));

function responsesSearch(item) {
  return { type: "search", id: item.id, query: item.action?.query, status: item.status,
    sources: item.action?.sources ? sources(item.action.sources) : undefined };
}

function anthropicSearch(block) {
  const failed = !Array.isArray(block.content);
  return { type: "search", id: block.tool_use_id, status: failed ? `failed (${block.content?.error_code})` : "completed",
    sources: failed ? [] : sources(block.content) };
}

function normalizeTokens(api, u) {
  if (api === "chat.completions") {
    return { input: u.prompt_tokens, cached: u.prompt_tokens_details?.cached_tokens || 0, output: u.completion_tokens,
      reasoning: u.completion_tokens_details?.reasoning_tokens || 0, cost: u.cost };
  }
  if (api === "responses") {
    return { input: u.input_tokens, cached: u.input_tokens_details?.cached_tokens || 0, output: u.output_tokens,
      reasoning: u.output_tokens_details?.reasoning_tokens || 0, cost: u.cost };
  }
  const cached = u.cache_read_input_tokens || 0;
  return { input: (u.input_tokens || 0) + cached + (u.cache_creation_input_tokens || 0), cached, output: u.output_tokens,
    reasoning: u.output_tokens_details?.thinking_tokens || 0, cost: u.cost };
}

// One family's SSE events -> playground events. `state` carries what a family spreads over several events.
export function* translate(api, sse, state) {
  const { event, data } = sse;
  if (data === "[DONE]") return;
  if (data?.error || event === "error") { yield { type: "error", message: data?.error?.message || data?.message || "stream error" }; return; }
  if (api === "chat.completions") {
    const choice = data.choices?.[0];
    if (choice) {
      const d = choice.delta || {};
      if (d.reasoning_content) yield { type: "reasoning", text: d.reasoning_content };
      if (d.content || choice.logprobs?.content?.length) yield { type: "text", text: d.content || "", logprobs: choice.logprobs?.content };
      for (const call of d.tool_calls || []) {
        yield { type: "tool", index: call.index, id: call.id, name: call.function?.name, args: call.function?.arguments || "" };
      }
      for (const a of d.annotations || []) if (a.url_citation) yield { type: "citation", url: a.url_citation.url, title: a.url_citation.title };
      if (choice.finish_reason) yield { type: "finish", reason: choice.finish_reason };
    }
    if (data.usage) yield { type: "usage", usage: normalizeUsage(api, data.usage) };
  } else if (api === "responses") {
    const t = data.type || event;
    if (t === "response.reasoning_text.delta") yield { type: "reasoning", text: data.delta };
    else if (t === "response.output_text.delta") yield { type: "text", text: data.delta, logprobs: data.logprobs };
    else if (t === "response.output_item.added" && data.item?.type === "function_call") {
      state.calls ??= {};
      state.calls[data.item.id] = data.output_index;
      yield { type: "tool", index: data.output_index, id: data.item.call_id, name: data.item.name, args: "" };
    } else if ((t === "response.output_item.added" || t === "response.output_item.done") && data.item?.type === "web_search_call") {
      yield responsesSearch(data.item);
    } else if (t === "response.output_text.annotation.added" && data.annotation?.type === "url_citation") {
      yield { type: "citation", url: data.annotation.url, title: data.annotation.title };
    } else if (t === "response.function_call_arguments.delta") {
      yield { type: "tool", index: data.output_index, args: data.delta };
    } else if (t === "response.completed" || t === "response.incomplete" || t === "response.failed") {
      const resp = data.response || {};
      yield { type: "usage", usage: normalizeUsage(api, resp.usage) };
      const reason = resp.status === "incomplete" ? resp.incomplete_details?.reason || "incomplete" : resp.status;
      if (t === "response.failed") yield { type: "error", message: resp.error?.message || "response failed" };
      yield { type: "finish", reason };
    }
  } else {
    const t = data.type || event;
    if (t === "message_start") state.usage = data.message?.usage;
    else if (t === "content_block_start" && data.content_block?.type === "tool_use") {
      yield { type: "tool", index: data.index, id: data.content_block.id, name: data.content_block.name, args: "" };
    } else if (t === "content_block_start" && data.content_block?.type === "server_tool_use") {
      state.server ??= {};
      state.server[data.index] = { id: data.content_block.id, json: "" };
      yield { type: "search", id: data.content_block.id, status: "searching" };
    } else if (t === "content_block_start" && data.content_block?.type === "web_search_tool_result") {
      yield anthropicSearch(data.content_block);
    } else if (t === "content_block_delta" && state.server?.[data.index]) {
      const use = state.server[data.index];
      use.json += data.delta?.partial_json || "";
      try { yield { type: "search", id: use.id, query: JSON.parse(use.json).query }; } catch { /* partial */ }
    } else if (t === "content_block_delta") {
      const d = data.delta || {};
      if (d.type === "thinking_delta") yield { type: "reasoning", text: d.thinking };
      else if (d.type === "text_delta") yield { type: "text", text: d.text };
      else if (d.type === "input_json_delta") yield { type: "tool", index: data.index, args: d.partial_json };
      else if (d.type === "signature_delta") yield { type: "signature", signature: d.signature };
      else if (d.type === "citations_delta" && d.citation?.url) yield { type: "citation", url: d.citation.url, title: d.citation.title };
    } else if (t === "message_delta") {
      yield { type: "usage", usage: normalizeUsage(api, { ...(state.usage || {}), ...(data.usage || {}) }) };
      if (data.delta?.stop_reason) yield { type: "finish", reason: data.delta.stop_reason };
    }
  }
}

// A non-streamed answer -> the same events.
export function* translateWhole(api, data) {
  if (api === "chat.completions") {
    const choice = data.choices?.[0] || {};
    const m = choice.message || {};
    if (m.reasoning_content) yield { type: "reasoning", text: m.reasoning_content };
    yield { type: "text", text: m.content || "", logprobs: choice.logprobs?.content };
    for (const [i, c] of (m.tool_calls || []).entries()) yield { type: "tool", index: i, id: c.id, name: c.function.name, args: c.function.arguments };
    for (const a of m.annotations || []) if (a.url_citation) yield { type: "citation", url: a.url_citation.url, title: a.url_citation.title };
    yield { type: "finish", reason: choice.finish_reason };
  } else if (api === "responses") {
    for (const [i, item] of (data.output || []).entries()) {
      if (item.type === "reasoning") yield { type: "reasoning", text: (item.content || []).map((c) => c.text).join("") };
      if (item.type === "message") for (const c of item.content || []) yield { type: "text", text: c.text || "", logprobs: c.logprobs };
      if (item.type === "message") {
        for (const c of item.content || []) for (const a of c.annotations || []) if (a.type === "url_citation") yield { type: "citation", url: a.url, title: a.title };
      }
      if (item.type === "web_search_call") yield responsesSearch(item);
      if (item.type === "function_call") yield { type: "tool", index: i, id: item.call_id, name: item.name, args: item.arguments };
    }
    yield { type: "finish", reason: data.status === "incomplete" ? data.incomplete_details?.reason : data.status };
  } else {
    for (const [i, block] of (data.content || []).entries()) {
      if (block.type === "thinking") { yield { type: "reasoning", text: block.thinking }; yield { type: "signature", signature: block.signature }; }
      if (block.type === "text") yield { type: "text", text: block.text };
      for (const c of (block.type === "text" && block.citations) || []) if (c.url) yield { type: "citation", url: c.url, title: c.title };
      if (block.type === "tool_use") yield { type: "tool", index: i, id: block.id, name: block.name, args: JSON.stringify(block.input) };
      if (block.type === "server_tool_use") yield { type: "search", id: block.id, query: block.input?.query, status: "searching" };
      if (block.type === "web_search_tool_result") yield anthropicSearch(block);
    }
    yield { type: "finish", reason: data.stop_reason };
  }
  yield { type: "usage", usage: normalizeUsage(api, data.usage) };
}
