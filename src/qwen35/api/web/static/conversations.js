// Conversations kept in this browser (localStorage): list, current one, save, delete, export and import as JSON.
// A message is {role: "user" | "assistant" | "tool", content, reasoning?, signature?, toolCalls?, toolCallId?,
// usage?, logprobs?, finish?, api?}. Nothing here talks to the server.

const STORE = "qwen35.conversations";
const CURRENT = "qwen35.currentConversation";

function load() {
  let all;
  try { all = JSON.parse(localStorage.getItem(STORE) || "[]"); } catch { all = []; }
  // a page closed mid-answer left a "streaming" turn behind: it was stopped
  for (const c of all) for (const m of c.messages || []) if (m.state === "streaming") m.state = "stopped";
  return all;
}

export class Conversations {
  constructor() {
    this.all = load();
    this.currentId = localStorage.getItem(CURRENT);
    if (!this.all.some((c) => c.id === this.currentId)) this.currentId = this.all[0]?.id ?? this.create().id;
  }

  get current() { return this.all.find((c) => c.id === this.currentId); }

  create() {
    const conv = { id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`, title: "New chat", messages: [], updated: Date.now() };
    this.all.unshift(conv);
    this.currentId = conv.id;
    this.save();
    return conv;
  }

  select(id) { this.currentId = id; this.save(); }

  remove(id) {
    this.all = this.all.filter((c) => c.id !== id);
    if (this.currentId === id) this.currentId = this.all[0]?.id ?? this.create().id;
    this.save();
  }

  save() {
    const conv = this.current;
    if (conv) {
      conv.updated = Date.now();
      const first = conv.messages.find((m) => m.role === "user");
      if (first) conv.title = first.content.slice(0, 60) || "New chat";
    }
    try {
      localStorage.setItem(STORE, JSON.stringify(this.all));
      localStorage.setItem(CURRENT, this.currentId);
    } catch { /* storage full: the conversation still lives in this page */ }
  }

  exportBlob() {
    const data = { format: "qwen35.conversations", version: 1, exported_at: new Date().toISOString(), conversations: this.all };
    return new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  }

  importJson(text) {
    const data = JSON.parse(text);
    const list = Array.isArray(data) ? data : data.conversations;
    if (!Array.isArray(list)) throw new Error("not a qwen35 conversations export");
    const known = new Set(this.all.map((c) => c.id));
    let added = 0;
    for (const conv of list) {
      if (!conv || !Array.isArray(conv.messages) || known.has(conv.id)) continue;
      this.all.push({ id: String(conv.id || `c${Math.random().toString(36).slice(2)}`), title: String(conv.title || "Imported"), messages: conv.messages, updated: conv.updated || Date.now() });
      added += 1;
    }
    this.save();
    return added;
  }
}
