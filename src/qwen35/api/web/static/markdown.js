// Answer rendering: markdown (marked) -> sanitized HTML (DOMPurify) -> highlighted code (highlight.js) and maths
// (KaTeX, loaded on first use). Maths is cut out (into private-use placeholders) of the source before markdown sees it (so `_` and `\` survive)
// and rendered into DOM nodes afterwards; KaTeX's DOM output sets styles through CSSOM, which the page's CSP allows.

import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import hljs from "./vendor/highlight.min.js";

marked.setOptions({ gfm: true, breaks: false });

const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])/g;
const FENCE = /(```[\s\S]*?(?:```|$)|`[^`\n]*`)/g;
let katexModule = null;

function extractMath(source) {
  const parts = [];
  // code spans and fences keep their dollars
  const pieces = source.split(FENCE).map((piece, i) => {
    if (i % 2 === 1) return piece;
    return piece.replace(MATH, (_, d1, d2, i1, i2) => {
      const display = d1 !== undefined || d2 !== undefined;
      parts.push({ tex: d1 ?? d2 ?? i1 ?? i2, display });
      return `\uE000MATH${parts.length - 1}\uE000`;
    });
  });
  return { text: pieces.join(""), parts };
}

async function renderMath(root, parts) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const hits = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeValue.includes("\uE000MATH")) hits.push(node);
  }
  if (!hits.length) return;
  katexModule ??= await import("./vendor/katex/katex.mjs");
  for (const node of hits) {
    const fragment = document.createDocumentFragment();
    for (const [i, piece] of node.nodeValue.split(/\uE000MATH(\d+)\uE000/).entries()) {
      if (i % 2 === 0) { if (piece) fragment.append(piece); continue; }
      const { tex, display } = parts[Number(piece)];
      const span = document.createElement(display ? "div" : "span");
      span.className = display ? "math display" : "math";
      try {
        katexModule.default.render(tex, span, { displayMode: display, throwOnError: true, output: "htmlAndMathml" });
      } catch {
        span.className = "math-error";
        span.textContent = display ? `$$${tex}$$` : `$${tex}$`;
      }
      fragment.append(span);
    }
    node.replaceWith(fragment);
  }
}

// Renders markdown `source` into `target` (replacing its children). Safe for any model output.
export async function renderMarkdown(target, source) {
  // a newer render of the same target wins even if an older one is still loading KaTeX
  const seq = String(Number(target.dataset.seq || 0) + 1);
  target.dataset.seq = seq;
  const { text, parts } = extractMath(source);
  const html = DOMPurify.sanitize(marked.parse(text), { USE_PROFILES: { html: true }, FORBID_ATTR: ["style"] });
  const holder = document.createElement("div");
  holder.innerHTML = html;
  for (const block of holder.querySelectorAll("pre code")) {
    try { hljs.highlightElement(block); } catch { /* unknown language: stays plain */ }
  }
  for (const link of holder.querySelectorAll("a[href]")) { link.rel = "noopener noreferrer"; link.target = "_blank"; }
  await renderMath(holder, parts);
  if (target.dataset.seq !== seq) return;
  target.replaceChildren(...holder.childNodes);
}
