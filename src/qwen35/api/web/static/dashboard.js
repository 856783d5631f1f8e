// The dashboard page: own balance, API keys (create with the secret shown once, copy, revoke, limits), usage over
// time (hour / day buckets, per-key filter) as SVG charts plus the latest requests, the rate card, and for admin
// keys the accounts with their credits. Only the documented /v1/dashboard/* and /v1/pricing endpoints are used.

import { api, el, ensureSignedIn, formatUsd, getKey, publicJson, wireSignOut } from "./common.js";
import { barChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
let isAdmin = false;
let keys = [];

function when(unix) { return unix ? new Date(unix * 1000).toLocaleString() : "—"; }
function limit(v) { return v ?? "∞"; }
function intOrNull(id) { const raw = $(id).value.trim(); return raw === "" ? undefined : Number(raw); }

async function loadBalance() {
  const b = await api("/v1/dashboard/balance");
  $("balance-amount").textContent = formatUsd(b.balance_usd);
  $("balance-amount").dataset.usd = b.balance_usd;
  $("balance-detail").textContent = `Account ${b.id} · available ${formatUsd(b.available_usd)} · held by requests in flight ${formatUsd(b.held_usd)} · `
    + (b.credit_limited ? "credit-limited: requests beyond the balance are refused" : "not credit-limited: metered, never refused");
}

async function loadPrices() {
  const prices = await publicJson("/v1/pricing");
  $("prices").tBodies[0].replaceChildren(...prices.data.map((p) => el("tr", {},
    el("td", { text: p.model }), el("td", { text: `$${p.input_per_million}` }), el("td", { text: `$${p.cached_input_per_million}` }),
    el("td", { text: `$${p.output_per_million}` }), el("td", { text: `$${p.web_search_per_call}` }))));
}

function mine(k) { return getKey()?.startsWith(k.prefix); }

async function loadKeys() {
  keys = (await api("/v1/dashboard/keys")).data;
  $("keys").tBodies[0].replaceChildren(...keys.map((k) => el("tr", { class: k.status, "data-key-id": k.id },
    el("td", { text: k.name + (mine(k) ? " (this session)" : "") }), el("td", {}, el("code", { text: `${k.prefix}…` })),
    el("td", { text: k.account }), el("td", { text: k.role }),
    el("td", { text: `${limit(k.limits.requests_per_minute)} / ${limit(k.limits.tokens_per_minute)} / ${limit(k.limits.max_concurrent)}` }),
    el("td", { text: when(k.created_at) }), el("td", { class: "key-status", text: k.status }),
    el("td", {}, k.status === "active" ? el("button", { type: "button", class: "small danger", text: "Revoke", "aria-label": `Revoke key ${k.name}`,
      onclick: () => revoke(k) }) : ""))));
  const filter = $("usage-key");
  const chosen = filter.value;
  filter.replaceChildren(el("option", { value: "", text: "All keys" }), ...keys.map((k) => el("option", { value: k.id, text: `${k.name} (${k.prefix}…)` })));
  filter.value = keys.some((k) => k.id === chosen) ? chosen : "";
}

async function revoke(k) {
  const warning = mine(k) ? "This is the key this page is signed in with; you will be signed out. " : "";
  if (!confirm(`${warning}Revoke key "${k.name}"? Requests with it fail at once.`)) return;
  try {
    await api(`/v1/dashboard/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
    if (mine(k)) { sessionStorage.clear(); location.reload(); return; }
    await loadKeys();
  } catch (exc) { $("keys-error").textContent = exc.message; }
}

async function createKey(event) {
  event.preventDefault();
  $("keys-error").textContent = "";
  const body = { name: $("key-name").value.trim() };
  const fields = { requests_per_minute: "key-rpm", tokens_per_minute: "key-tpm", max_concurrent: "key-conc" };
  for (const [name, id] of Object.entries(fields)) { const v = intOrNull(id); if (v !== undefined) body[name] = v; }
  if (isAdmin) {
    if ($("key-account").value) body.account = $("key-account").value;
    if ($("key-admin").checked) body.admin = true;
  }
  try {
    const made = await api("/v1/dashboard/keys", { method: "POST", body });
    const code = el("code", { id: "new-secret-value", text: made.secret });
    const copy = el("button", { type: "button", class: "small", text: "Copy", onclick: async () => {
      try { await navigator.clipboard.writeText(made.secret); copy.textContent = "Copied"; } catch { copy.textContent = "Select and copy by hand"; }
    } });
    $("new-secret").replaceChildren(el("strong", { text: `New key "${made.name}": ` }), code, " ", copy,
      el("p", { class: "hint", text: "Shown this once: the server keeps only a hash. Store it now." }),
      el("button", { type: "button", class: "small", text: "Done", onclick: () => { $("new-secret").hidden = true; $("new-secret").replaceChildren(); } }));
    $("new-secret").hidden = false;
    $("create-key").reset();
    await loadKeys();
  } catch (exc) { $("keys-error").textContent = exc.message; }
}

async function loadUsage() {
  const bucket = $("bucket").value;
  const key = $("usage-key").value;
  const q = new URLSearchParams({ bucket });
  if (key) q.set("key_id", key);
  const series = await api(`/v1/dashboard/usage/series?${q}`);
  const rows = series.data.map((r) => ({ ...r, cost: Number(r.cost_usd) }));
  $("charts").replaceChildren(
    barChart({ title: "Requests", data: rows, bucket, series: [{ key: "requests", label: "requests" }] }),
    barChart({ title: "Tokens", data: rows, bucket, series: [
      { key: "input_tokens", label: "in" }, { key: "cached_input_tokens", label: "cached", cls: "b2" }, { key: "output_tokens", label: "out", cls: "b3" }] }),
    barChart({ title: "Cost (USD)", data: rows, bucket, series: [{ key: "cost", label: "cost" }], format: (v) => formatUsd(v) }));
  const recentQ = new URLSearchParams({ limit: "20" });
  if (key) recentQ.set("key_id", key);
  const recent = await api(`/v1/dashboard/usage?${recentQ}`);
  const names = new Map(keys.map((k) => [k.id, k.name]));
  $("recent").tBodies[0].replaceChildren(...recent.data.map((r) => el("tr", {},
    el("td", { text: when(r.created_at) }), el("td", { text: r.endpoint }), el("td", { text: names.get(r.key_id) || r.key_id }),
    el("td", { text: `${r.input_tokens} (${r.cached_input_tokens})` }), el("td", { text: `${r.output_tokens} (${r.reasoning_tokens})` }),
    el("td", { text: formatUsd(r.cost_usd) }), el("td", { text: r.status }))));
}

async function loadAccounts() {
  const accounts = (await api("/v1/dashboard/accounts")).data;
  $("accounts").tBodies[0].replaceChildren(...accounts.map((a) => el("tr", { "data-account": a.id },
    el("td", { text: a.id + (a.is_default ? " (default)" : "") }), el("td", { class: "acct-balance", text: formatUsd(a.balance_usd) }),
    el("td", { text: formatUsd(a.held_usd) }), el("td", { text: formatUsd(a.available_usd) }), el("td", { text: a.credit_limited ? "yes" : "no" }))));
  for (const id of ["credit-account", "key-account"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...(id === "key-account" ? [el("option", { value: "", text: "(own account)" })] : []),
      ...accounts.map((a) => el("option", { value: a.id, text: a.id })));
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }
}

function wireAdmin() {
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = false;
  $("create-account").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("accounts-error").textContent = "";
    try {
      await api("/v1/dashboard/accounts", { method: "POST", body: { account: $("account-name").value.trim(), credit_limited: $("account-limited").checked } });
      $("create-account").reset();
      await loadAccounts();
    } catch (exc) { $("accounts-error").textContent = exc.message; }
  });
  $("add-credits").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("accounts-error").textContent = "";
    const body = { account: $("credit-account").value, amount_usd: $("credit-amount").value.trim() };
    if ($("credit-note").value.trim()) body.note = $("credit-note").value.trim();
    try {
      await api("/v1/dashboard/credits", { method: "POST", body });
      $("credit-amount").value = "";
      await Promise.all([loadAccounts(), loadBalance()]);
    } catch (exc) { $("accounts-error").textContent = exc.message; }
  });
}

async function main() {
  const root = $("root");
  await ensureSignedIn(root, "dashboard");
  wireSignOut($("sign-out"));
  root.replaceChildren($("dashboard").content.cloneNode(true));
  try { await api("/v1/dashboard/accounts"); isAdmin = true; } catch { isAdmin = false; }
  $("who").textContent = isAdmin ? "admin key" : "";
  if (isAdmin) { wireAdmin(); await loadAccounts(); }
  $("create-key").addEventListener("submit", createKey);
  $("bucket").addEventListener("change", loadUsage);
  $("usage-key").addEventListener("change", loadUsage);
  $("refresh-usage").addEventListener("click", () => Promise.all([loadUsage(), loadBalance(), isAdmin ? loadAccounts() : null]));
  await Promise.all([loadBalance(), loadPrices(), loadKeys()]);
  await loadUsage();
  document.body.dataset.ready = "true";
}

main();
