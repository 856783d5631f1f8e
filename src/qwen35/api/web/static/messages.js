// How one message of a conversation looks: user turns (editable), assistant turns (thinking apart and collapsible
// with its token count, markdown answer, tool calls with a form to answer them, per-token logprobs, usage and cost)
// and tool results. Assistant views re-render at most every 80 ms while streaming.

import { el, formatUsd } from "./common.js";
import { FAMILIES } from "./families.js";
import { renderMarkdown } from "./markdown.js";

export function renderMessage(m, index, ctx) {
  if (m.role === "assistant") return renderAssistant(m, index, ctx).node;
  if (m.role === "tool") {
    return el("article", { class: "msg tool", "aria-label": "Tool result" },
      el("header", {}, el("span", { text: `Tool result · ${m.name || m.toolCallId}` })),
      el("div", { class: "body plain", text: m.content }));
  }
  const body = el("div", { class: "body plain", text: m.content });
  const node = el("article", { class: "msg user", "aria-label": "Your message" });
  const edit = el("button", { type: "button", class: "small", text: "Edit", "aria-label": "Edit this message",
    onclick: () => {
      const area = el("textarea", { rows: 3, "aria-label": "Edited message" });
      area.value = m.content;
      const form = el("form", { class: "edit" }, area,
        el("button", { type: "submit", class: "small primary", text: "Save & regenerate" }),
        el("button", { type: "button", class: "small", text: "Cancel", onclick: () => form.replaceWith(body) }));
      form.addEventListener("submit", (e) => { e.preventDefault(); ctx.edit(index, area.value); });
      body.replaceWith(form);
      area.focus();
    } });
  node.append(el("header", {}, el("span", { text: "You" }), el("span", { class: "actions" }, edit)), body);
  return node;
}

function usageLine(m) {
  const u = m.usage;
  const parts = [];
  if (u) {
    parts.push(el("span", { class: "u-in", text: `in ${u.input}` + (u.cached ? ` (cached ${u.cached})` : "") }));
    parts.push(el("span", { class: "u-out", text: `out ${u.output}` + (u.reasoning ? ` (thinking ${u.reasoning})` : "") }));
    if (u.searches !== undefined) parts.push(el("span", { class: "u-search", text: `searches ${u.searches}` }));
    if (u.cost !== undefined && u.cost !== null) parts.push(el("span", { class: "u-cost", text: `cost ${formatUsd(u.cost)}` }));
  }
  if (m.finish) parts.push(el("span", { class: "u-finish", text: `finish: ${m.finish}` }));
  if (m.state === "stopped") parts.push(el("span", { class: "u-stopped", text: "stopped" }));
  return parts;
}

function probClass(logprob) {
  const p = Math.exp(logprob);
  return p > 0.6 ? "p-high" : p > 0.2 ? "p-mid" : "p-low";
}

function logprobView(m) {
  const detail = el("div", { class: "tok-detail", "aria-live": "polite" });
  const tokens = m.logprobs.map((lp) => el("button", {
    type: "button", class: `tok ${probClass(lp.logprob)}`, text: lp.token,
    title: `${(Math.exp(lp.logprob) * 100).toFixed(1)}%`, "aria-label": `token ${JSON.stringify(lp.token)}, probability ${(Math.exp(lp.logprob) * 100).toFixed(1)} percent`,
    onclick: () => {
      const alts = (lp.top_logprobs || []).map((t) => `${JSON.stringify(t.token)} ${(Math.exp(t.logprob) * 100).toFixed(1)}%`).join(" · ");
      detail.textContent = `${JSON.stringify(lp.token)}: logprob ${lp.logprob.toFixed(3)}` + (alts ? ` — top: ${alts}` : "");
    } }));
  return el("div", { class: "lp-wrap" }, el("div", { class: "logprobs", role: "group", "aria-label": "Tokens with probabilities" }, tokens), detail);
}

function toolCallView(call, m, ctx) {
  let args = call.arguments;
  try { args = JSON.stringify(JSON.parse(call.arguments), null, 2); } catch { /* partial while streaming */ }
  const node = el("div", { class: "toolcall" }, el("div", {}, el("strong", { text: `Tool call: ${call.name}` }), el("span", { class: "hint", text: ` ${call.id}` })),
    el("pre", {}, el("code", { text: args })));
  if (m.state === "done" && ctx.isLastAssistant && !ctx.answered.has(call.id)) {
    const id = `result-${call.id}`;
    const input = el("input", { id, type: "text", placeholder: '{"temperature": 21}' });
    const form = el("form", {}, el("label", { for: id, class: "sr-only", text: `Result of ${call.name}` }), input,
      el("button", { type: "submit", class: "small primary", text: "Send result" }));
    form.addEventListener("submit", (e) => { e.preventDefault(); ctx.answerTool(call, input.value); });
    node.append(form);
  }
  return node;
}

function sourceLink(source) {
  const safe = /^https?:\/\//i.test(source.url || "");
  return el("li", {}, safe
    ? el("a", { href: source.url, target: "_blank", rel: "noopener noreferrer", text: source.title || source.url })
    : el("span", { text: source.title || source.url || "" }));
}

// The searches the server ran for this answer, each with its sources, and the sources the answer cites.
function searchesView(m) {
  const items = (m.searches || []).map((s) => el("div", { class: "search", "data-status": s.status },
    el("div", {}, el("strong", { text: "Web search: " }), el("span", { text: s.query || "…" }),
      el("span", { class: "hint", text: ` · ${s.status}` + (s.sources?.length ? ` · ${s.sources.length} sources` : "") })),
    s.sources?.length ? el("ul", { class: "sources" }, s.sources.map(sourceLink)) : null));
  if (m.citations?.length) {
    items.push(el("div", { class: "citations" }, el("strong", { text: "Cited: " }),
      el("ul", { class: "sources" }, m.citations.map(sourceLink))));
  }
  return items;
}

// -> {node, update(final?)}: update() after each change of `m`; update(true) at the end of the stream.
export function renderAssistant(m, index, ctx) {
  const summary = el("summary", {});
  const thinkText = el("div", { class: "think-text" });
  const thinking = el("details", { class: "thinking" }, summary, thinkText);
  let userToggled = false;
  summary.addEventListener("click", () => { userToggled = true; });
  const answer = el("div", { class: "body answer" });
  const tools = el("div", { class: "tools" });
  const searches = el("div", { class: "searches", "aria-label": "Web searches" });
  const usage = el("div", { class: "usage" });
  const error = el("p", { class: "error", role: "alert" });
  const lpHolder = el("div", {});
  const lpToggle = el("button", { type: "button", class: "small", text: "Tokens", "aria-pressed": "false",
    onclick: () => { const on = lpToggle.getAttribute("aria-pressed") !== "true"; lpToggle.setAttribute("aria-pressed", String(on)); paint(); } });
  const regenerate = el("button", { type: "button", class: "small", text: "Regenerate", "aria-label": "Regenerate this answer", onclick: () => ctx.regenerate(index) });
  const actions = el("span", { class: "actions" }, lpToggle, regenerate);
  const node = el("article", { class: "msg assistant", "aria-label": "Assistant message" },
    el("header", {}, el("span", { text: `Assistant · ${FAMILIES[m.api]?.label || m.api || ""}` }), actions),
    thinking, searches, answer, tools, lpHolder, usage, error);
  let timer = null;
  let renderedAnswer = null;

  function paint() {
    timer = null;
    node.dataset.state = m.state || "done";
    const streaming = m.state === "streaming";
    thinking.hidden = !m.reasoning;
    const count = m.usage?.reasoning || m.reasoningDeltas || 0;
    summary.textContent = streaming && !m.content ? `Thinking… ${count} tokens` : `Thinking · ${count} tokens`;
    if (!userToggled) thinking.open = streaming && !m.content;
    thinkText.textContent = m.reasoning;
    if (m.content !== renderedAnswer) {
      renderedAnswer = m.content;
      renderMarkdown(answer, m.content);
    }
    tools.replaceChildren(...(m.toolCalls || []).map((c) => toolCallView(c, m, ctx)));
    searches.replaceChildren(...searchesView(m));
    searches.hidden = !m.searches?.length && !m.citations?.length;
    lpToggle.hidden = !m.logprobs?.length;
    lpHolder.replaceChildren(...(lpToggle.getAttribute("aria-pressed") === "true" && m.logprobs?.length ? [logprobView(m)] : []));
    regenerate.hidden = streaming || !ctx.isLastAssistant;
    usage.replaceChildren(...usageLine(m));
    error.textContent = m.error || "";
  }

  function update(final = false) {
    if (final) { if (timer) clearTimeout(timer); paint(); return; }
    timer ??= setTimeout(paint, 80);
  }
  paint();
  return { node, update };
}
