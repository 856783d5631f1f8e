// Shared by the playground and the dashboard: the API key (sessionStorage only), JSON calls to this origin,
// the SSE reader, a tiny DOM builder, and the sign-in form. Everything goes through the documented HTTP API.

const KEY_ITEM = "qwen35.apiKey";

export function getKey() { return sessionStorage.getItem(KEY_ITEM); }
export function setKey(secret) { sessionStorage.setItem(KEY_ITEM, secret); }
export function clearKey() { sessionStorage.removeItem(KEY_ITEM); }

// `qwen35 serve` prints `/#key=SECRET` on first run: a fragment never reaches the server (or its logs).
// Take it, keep it for this tab only, and drop it from the address bar and history.
export function takeKeyFromHash() {
  const match = location.hash.match(/[#&]key=([^&]+)/);
  if (!match) return;
  setKey(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = body?.error?.message || body?.message || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  const response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function publicJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new ApiError(response.status, null);
  return response.json();
}

// Server-sent events of a fetch() response: yields {event, data} with data parsed as JSON ("[DONE]" kept as text).
export async function* readSse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const raw = data.join("\n");
      let parsed = raw;
      try { parsed = JSON.parse(raw); } catch { /* "[DONE]" */ }
      yield { event, data: parsed };
    }
  }
}

// el("button", {class: "small", onclick: fn, "aria-label": "..."}, "text", child...). Text is always text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatUsd(value) {
  const n = Number(value || 0);
  if (n === 0) return "$0";
  const sign = n < 0 ? "-" : "";
  const a = Math.abs(n);
  return `${sign}$${a < 0.01 ? a.toPrecision(3) : a.toFixed(a < 100 ? 4 : 2)}`;
}

// Short form for chart axes: 5.3e-6 rather than 0.00000528
export function formatShort(value) {
  const n = Number(value || 0);
  if (n === 0) return "0";
  const a = Math.abs(n);
  return a >= 1000 ? `${(n / 1000).toFixed(1)}k` : a < 0.01 ? n.toExponential(1) : String(Number(n.toPrecision(3)));
}

// Renders the sign-in form into `root`; resolves once a key has been checked against the server.
export function signIn(root, purpose) {
  return new Promise((resolve) => {
    const input = el("input", { id: "api-key", type: "password", autocomplete: "off", spellcheck: "false", required: true,
      placeholder: "sk-q35-…", "aria-describedby": "api-key-hint" });
    const error = el("p", { class: "error", role: "alert" });
    const form = el("form", { class: "signin", "aria-labelledby": "signin-title" },
      el("h1", { id: "signin-title", text: `Sign in to the ${purpose}` }),
      el("label", { for: "api-key", text: "API key" }), input,
      el("p", { id: "api-key-hint", class: "hint",
        text: "Kept in this browser tab only (sessionStorage) and sent only to this server. `qwen35 serve` prints an admin key on its first start; `qwen35 keys create` makes more." }),
      error, el("button", { class: "primary", type: "submit", text: "Sign in" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      setKey(input.value.trim());
      try {
        await api("/v1/dashboard/balance");
        resolve();
      } catch (exc) {
        clearKey();
        error.textContent = exc.status === 401 ? "That key is not valid (unknown, revoked or expired)." : String(exc.message);
      }
    });
    root.replaceChildren(form);
    input.focus();
  });
}

// Resolves when a working key is in sessionStorage (asks for one when needed).
export async function ensureSignedIn(root, purpose) {
  takeKeyFromHash();
  if (getKey()) {
    try { await api("/v1/dashboard/balance"); return; } catch { clearKey(); }
  }
  await signIn(root, purpose);
}

export function wireSignOut(button) {
  button.hidden = false;
  button.addEventListener("click", () => { clearKey(); location.reload(); });
}
