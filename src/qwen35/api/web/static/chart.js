// Inline SVG bar charts for the dashboard (no library): one group of bars per time bucket, one bar per series,
// a labelled y maximum and sparse x labels. The SVG has role="img" and a text summary for screen readers.

import { formatShort } from "./common.js";

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function bucketLabel(start, bucket) {
  const d = new Date(start * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return bucket === "hour" ? `${pad(d.getHours())}:00` : `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// data: [{start, ...values}], series: [{key, label, cls}], format: number -> text
export function barChart({ title, data, series, bucket, format = String }) {
  const W = 480, H = 180, left = 48, bottom = 22, top = 10;
  const values = data.map((row) => series.map((s) => Number(row[s.key]) || 0));
  const max = Math.max(0, ...values.flat());
  const totals = series.map((s, j) => values.reduce((sum, row) => sum + row[j], 0));
  const summary = `${title}: ` + series.map((s, j) => `${s.label} total ${format(totals[j])}`).join(", ") + ` over ${data.length} ${bucket}s`;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "bars" });
  root.append(svg("title", {}, summary));
  const plotW = W - left - 6, plotH = H - top - bottom;
  root.append(svg("line", { class: "axis", x1: left, y1: top + plotH, x2: W - 6, y2: top + plotH }));
  root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }));
  root.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, formatShort(max)));
  root.append(svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  const groupW = plotW / Math.max(1, data.length);
  const barW = Math.max(1, (groupW * 0.8) / series.length);
  const every = Math.ceil(data.length / 8);
  data.forEach((row, i) => {
    const x0 = left + i * groupW + groupW * 0.1;
    series.forEach((s, j) => {
      const v = values[i][j];
      if (!v) return;
      const h = max ? Math.max(1, (v / max) * plotH) : 0;
      const bar = svg("rect", { class: `bar ${s.cls || ""}`, x: x0 + j * barW, y: top + plotH - h, width: barW, height: h });
      bar.append(svg("title", {}, `${bucketLabel(row.start, bucket)} ${s.label}: ${format(v)}`));
      root.append(bar);
    });
    if (i % every === 0) root.append(svg("text", { x: x0 + groupW * 0.4, y: H - 6, "text-anchor": "middle" }, bucketLabel(row.start, bucket)));
  });
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("h3");
  caption.textContent = title;
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, j) => {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = `sw ${s.cls || ""}`;
    item.append(sw, ` ${s.label}: ${format(totals[j])}`);
    item.dataset.series = s.key;
    item.dataset.total = String(totals[j]);
    legend.append(item);
  });
  figure.append(caption, root, legend);
  return figure;
}
