// The playground page: sign in, then chat with the model over any of the three API families, with every request
// parameter in the side panel (defaults and ranges from GET /v1/capabilities), streaming with thinking shown apart,
// tool calls that can be answered, logprobs, usage and cost per answer, edit / regenerate / stop, and "view code".

import { ApiError, authHeaders, el, ensureSignedIn, publicJson, readSse, wireSignOut } from "./common.js";
import { Conversations } from "./conversations.js";
import { buildRequest, translate, translateWhole } from "./families.js";
import { curlCode, pythonCode } from "./code.js";
import { renderAssistant, renderMessage } from "./messages.js";

const NUMBER_FIELDS = ["temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "max_tokens", "seed"];
const SETTINGS_ITEM = "qwen35.playgroundSettings";
const $ = (id) => document.getElementById(id);

let caps;
let convs;
let running = null; // {controller, message, node}

function numberField(name, limit) {
  const range = limit.integer && name === "seed" ? "any integer ≥ 0" : `${limit.min}–${limit.max}`;
  const dflt = limit.default === null ? "none" : limit.default;
  const step = limit.integer ? "1" : "any";
  return el("div", {},
    el("label", { for: name, text: `${name} ` }, el("span", { class: "hint", text: `(${range}; default ${dflt})` })),
    el("input", { id: name, name, type: "number", step, min: String(limit.min), max: String(limit.max),
      placeholder: dflt === "none" ? "random" : String(dflt), inputmode: "decimal" }));
}

function readNumber(name) {
  const raw = $(name).value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  const limit = caps.parameters[name];
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number`);
  if (limit.integer && !Number.isInteger(value)) throw new Error(`${name} must be an integer`);
  if (value < limit.min || value > limit.max) throw new Error(`${name} must be in ${limit.min}–${limit.max}`);
  return value;
}

function readJson(id, what) {
  const raw = $(id).value.trim();
  if (!raw) return undefined;
  try { return JSON.parse(raw); } catch (exc) { throw new Error(`${what} is not valid JSON: ${exc.message}`); }
}

// The form -> settings for families.buildRequest; throws with a readable message on a bad value.
function readSettings() {
  const params = {};
  for (const name of NUMBER_FIELDS) {
    const value = readNumber(name);
    if (value !== undefined) params[name] = value;
  }
  const stop = $("stop-seqs").value.split("\n").filter((s) => s.length);
  if (stop.length > caps.max_stop) throw new Error(`at most ${caps.max_stop} stop sequences`);
  const tools = readJson("tools", "Tools") ?? [];
  if (!Array.isArray(tools)) throw new Error("Tools must be a JSON array");
  const format = $("format").value;
  const schema = format === "json_schema" ? readJson("schema", "The JSON schema") : undefined;
  if (format === "json_schema" && (!schema || typeof schema !== "object")) throw new Error("give a JSON schema object");
  const reasoning = $("reasoning").value;
  let thinkingBudget;
  if (reasoning === "budget") {
    const b = caps.parameters.thinking_budget;
    thinkingBudget = Number($("thinking_budget").value);
    if (!Number.isInteger(thinkingBudget) || thinkingBudget < b.min || thinkingBudget > b.max) throw new Error(`thinking budget must be an integer in ${b.min}–${b.max}`);
  }
  const topLogprobs = Number($("top_logprobs").value || 0);
  return {
    api: $("api").value, model: caps.model, system: $("system").value.trim(), params, stop, reasoning, thinkingBudget,
    logprobs: $("logprobs").checked, topLogprobs, format, schema, tools, toolChoice: $("tool_choice").value,
    parallelTools: $("parallel_tools").checked, stream: $("stream").checked,
    webSearch: Boolean(caps.web_search) && $("web_search").checked,
  };
}

const PERSISTED = ["api", "stream", "system", ...NUMBER_FIELDS, "stop-seqs", "reasoning", "thinking_budget", "logprobs", "top_logprobs", "format", "schema", "tools", "tool_choice", "parallel_tools", "web_search"];

function saveForm() {
  const values = {};
  for (const id of PERSISTED) values[id] = $(id).type === "checkbox" ? $(id).checked : $(id).value;
  localStorage.setItem(SETTINGS_ITEM, JSON.stringify(values));
}

function restoreForm() {
  let values = {};
  try { values = JSON.parse(localStorage.getItem(SETTINGS_ITEM) || "{}"); } catch { values = {}; }
  for (const [id, value] of Object.entries(values)) {
    const node = $(id);
    if (!node) continue;
    if (node.type === "checkbox") node.checked = Boolean(value); else node.value = value;
  }
}

function syncForm() {
  $("thinking_budget").disabled = $("reasoning").value !== "budget";
  $("schema").disabled = $("format").value !== "json_schema";
  const noLogprobs = !caps.logprobs[$("api").value];
  $("logprobs").disabled = noLogprobs;
  $("top_logprobs").disabled = noLogprobs;
  $("logprobs-reason").hidden = !noLogprobs;
  try { readSettings(); $("settings-error").textContent = ""; } catch (exc) { $("settings-error").textContent = exc.message; }
}

function setStatus(text) { $("status").textContent = text; }

function renderConversationList() {
  const list = $("conv-list");
  list.replaceChildren(...convs.all.map((c) => el("li", { class: c.id === convs.currentId ? "current" : "" },
    el("button", { type: "button", class: "open", text: c.title, title: c.title, "aria-current": c.id === convs.currentId ? "true" : undefined,
      onclick: () => { if (!running) { convs.select(c.id); renderAll(); } } }),
    el("button", { type: "button", class: "small danger", text: "×", "aria-label": `Delete conversation ${c.title}`,
      onclick: () => { if (!running) { convs.remove(c.id); renderAll(); } } }))));
}

function handlers() {
  return {
    edit: (index, text) => { if (running) return; const msgs = convs.current.messages; msgs[index].content = text; msgs.length = index + 1; convs.save(); renderAll(); generate(); },
    regenerate: (index) => { if (running) return; convs.current.messages.length = index; convs.save(); renderAll(); generate(); },
    answerTool: (call, result) => {
      if (running) return;
      const msgs = convs.current.messages;
      msgs.push({ role: "tool", toolCallId: call.id, name: call.name, content: result });
      convs.save();
      // every call of the last assistant turn answered: the model continues
      const lastAssistant = msgs.map((m) => m.role).lastIndexOf("assistant");
      const answered = new Set(msgs.slice(lastAssistant + 1).filter((m) => m.role === "tool").map((m) => m.toolCallId));
      renderAll();
      if ((msgs[lastAssistant].toolCalls || []).every((c) => answered.has(c.id))) generate();
    },
  };
}

function renderAll() {
  renderConversationList();
  const msgs = convs.current.messages;
  const lastAssistant = msgs.map((m) => m.role).lastIndexOf("assistant");
  $("messages").replaceChildren(...msgs.map((m, i) => renderMessage(m, i, { ...handlers(), isLastAssistant: i === lastAssistant, answered: new Set(msgs.filter((x) => x.role === "tool").map((x) => x.toolCallId)) })));
  $("messages").scrollTop = $("messages").scrollHeight;
}

async function generate() {
  let settings;
  try { settings = readSettings(); } catch (exc) { setStatus(exc.message); return; }
  const { path, body } = buildRequest(settings, convs.current.messages);
  const message = { role: "assistant", api: settings.api, content: "", reasoning: "", toolCalls: [], logprobs: [], usage: null, finish: null, state: "streaming" };
  convs.current.messages.push(message);
  const view = renderAssistant(message, convs.current.messages.length - 1, { ...handlers(), isLastAssistant: true, answered: new Set() });
  $("messages").append(view.node);
  const controller = new AbortController();
  running = { controller, message };
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("Generating…");
  const state = {};
  const toolByIndex = new Map();
  const apply = (ev) => {
    if (ev.type === "reasoning") { message.reasoning += ev.text; message.reasoningDeltas = (message.reasoningDeltas || 0) + 1; }
    else if (ev.type === "text") { message.content += ev.text; if (ev.logprobs) message.logprobs.push(...ev.logprobs); }
    else if (ev.type === "signature") message.signature = ev.signature;
    else if (ev.type === "tool") {
      let call = toolByIndex.get(ev.index);
      if (!call) { call = { id: ev.id || `call_${ev.index}`, name: ev.name || "", arguments: "" }; toolByIndex.set(ev.index, call); message.toolCalls.push(call); }
      if (ev.id) call.id = ev.id;
      if (ev.name) call.name = ev.name;
      call.arguments += ev.args || "";
    } else if (ev.type === "search") {
      message.searches ??= [];
      let search = message.searches.find((x) => x.id === ev.id);
      if (!search) { search = { id: ev.id, query: "", status: "searching", sources: [] }; message.searches.push(search); }
      if (ev.query) search.query = ev.query;
      if (ev.status) search.status = ev.status;
      if (ev.sources) search.sources = ev.sources;
    } else if (ev.type === "citation") {
      message.citations ??= [];
      if (!message.citations.some((c) => c.url === ev.url)) message.citations.push({ url: ev.url, title: ev.title });
    } else if (ev.type === "usage" && ev.usage) message.usage = ev.usage;
    else if (ev.type === "finish") message.finish = ev.reason;
    else if (ev.type === "error") message.error = ev.message;
    view.update();
  };
  try {
    const response = await fetch(path, {
      method: "POST", signal: controller.signal, body: JSON.stringify(body),
      headers: authHeaders({ "Content-Type": "application/json", ...(settings.api === "messages" ? { "anthropic-version": "2023-06-01" } : {}) }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(response.status, data);
    }
    if (settings.stream) {
      for await (const sse of readSse(response)) for (const ev of translate(settings.api, sse, state)) apply(ev);
    } else {
      for (const ev of translateWhole(settings.api, await response.json())) apply(ev);
    }
    message.state = message.error ? "error" : "done";
    setStatus("");
  } catch (exc) {
    if (controller.signal.aborted) { message.state = "stopped"; setStatus("Stopped."); }
    else { message.state = "error"; message.error = exc.message; setStatus(""); }
  } finally {
    running = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    view.update(true);
    convs.save();
    renderConversationList();
  }
}

function readAttachment(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ kind: file.type.startsWith("video/") ? "video" : "image", url: reader.result, name: file.name });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function send(event) {
  event.preventDefault();
  if (running) return;
  const text = $("prompt").value;
  if (!text.trim()) return;
  try { readSettings(); } catch (exc) { setStatus(exc.message); return; }
  const files = [...($("attach").files || [])];
  let media = [];
  try { media = await Promise.all(files.map(readAttachment)); } catch (exc) { setStatus(`cannot read the file: ${exc}`); return; }
  convs.current.messages.push(media.length ? { role: "user", content: text, media } : { role: "user", content: text });
  $("attach").value = "";
  $("prompt").value = "";
  convs.save();
  renderAll();
  generate();
}

function showCode(kind) {
  let settings;
  try { settings = readSettings(); } catch (exc) { $("code-text").textContent = `# ${exc.message}`; return; }
  const pending = $("prompt").value.trim();
  const messages = [...convs.current.messages, ...(pending ? [{ role: "user", content: pending }] : [])];
  if (!messages.length) messages.push({ role: "user", content: "Hello!" });
  const { path, body } = buildRequest(settings, messages);
  $("code-text").textContent = kind === "curl" ? curlCode(location.origin, path, body, settings.api) : pythonCode(location.origin, body, settings.api);
  $("tab-curl").setAttribute("aria-selected", String(kind === "curl"));
  $("tab-python").setAttribute("aria-selected", String(kind !== "curl"));
  $("code-dialog").dataset.kind = kind;
}

function wire() {
  const sampling = $("sampling");
  for (const name of NUMBER_FIELDS) sampling.append(numberField(name, caps.parameters[name]));
  const b = caps.parameters.thinking_budget;
  Object.assign($("thinking_budget"), { min: String(b.min), max: String(b.max) });
  $("budget-range").textContent = `(${b.min}–${b.max})`;
  $("max-stop").textContent = String(caps.max_stop);
  const media = caps.media;
  const attach = $("attach");
  attach.disabled = !(media.image || media.video);
  if (attach.disabled) {
    attach.title = media.reason;
    $("attach-label").title = media.reason;
    $("attach-reason").textContent = media.reason;
  }
  restoreForm();
  syncForm();
  document.querySelector(".settings").addEventListener("input", () => { syncForm(); saveForm(); });
  document.querySelector(".settings").addEventListener("change", () => { syncForm(); saveForm(); });
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); } });
  $("stop").addEventListener("click", () => running?.controller.abort());
  $("new-conv").addEventListener("click", () => { if (!running) { convs.create(); renderAll(); $("prompt").focus(); } });
  $("export-conv").addEventListener("click", () => {
    const link = el("a", { href: URL.createObjectURL(convs.exportBlob()), download: "qwen35-conversations.json" });
    document.body.append(link); link.click(); link.remove();
  });
  $("import-conv").addEventListener("click", () => $("import-file").click());
  $("import-file").addEventListener("change", async () => {
    const file = $("import-file").files[0];
    if (!file) return;
    try { setStatus(`Imported ${convs.importJson(await file.text())} conversation(s).`); renderAll(); } catch (exc) { setStatus(`Import failed: ${exc.message}`); }
  });
  $("view-code").addEventListener("click", () => { showCode($("code-dialog").dataset.kind || "curl"); $("code-dialog").showModal(); });
  $("tab-curl").addEventListener("click", () => showCode("curl"));
  $("tab-python").addEventListener("click", () => showCode("python"));
  $("close-code").addEventListener("click", () => $("code-dialog").close());
  $("copy-code").addEventListener("click", () => navigator.clipboard?.writeText($("code-text").textContent));
}

async function main() {
  const root = $("root");
  await ensureSignedIn(root, "playground");
  wireSignOut($("sign-out"));
  caps = await publicJson("/v1/capabilities");
  root.replaceChildren($("playground").content.cloneNode(true));
  convs = new Conversations();
  wire();
  if (!caps.web_search) {
    $("web_search").checked = false;
    $("web_search").disabled = true;
    $("web_search_label").title = "This server has no search provider key (LINKUP_API_KEY)";
  }
  renderAll();
  $("prompt").focus();
  document.body.dataset.ready = "true";
}

main();
