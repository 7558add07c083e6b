// Small DOM and formatting helpers (text only: no innerHTML anywhere, so data cannot inject).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  if (v >= 60000) return `${(v / 60000).toFixed(1)} min`;
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 1) return `${v.toFixed(v >= 100 ? 0 : 1)} ms`;
  return `${Math.round(v * 1000)} µs`;
}

export function num(v) {
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v ?? "–");
  return n.toLocaleString("en-US", { maximumFractionDigits: 6 });
}

export function compact(n) {
  return Number(n).toLocaleString("en-US", { notation: "compact", maximumFractionDigits: 1 });
}

export const t = (iso) => (iso ? Date.parse(iso) : NaN);

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function durationOf(run) {
  if (run.durationMs !== undefined && run.durationMs !== null) return run.durationMs;
  const a = t(run.startedAt), b = t(run.endedAt);
  return Number.isFinite(a) && Number.isFinite(b) ? b - a : null;
}

export const pill = (status) => h("span", { class: `pill ${status}` }, status);

export function customerLabel(id, external) {
  return external ? `${external} · ${id}` : id;
}

/** Read `#/path?query` into `{path: [...], query: URLSearchParams}`. */
export function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [p, q] = raw.split("?");
  return { path: p ? p.split("/").map(decodeURIComponent) : [], query: new URLSearchParams(q || "") };
}

export function go(path, query) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v) qs.set(k, v);
  location.hash = "#/" + path + (qs.toString() ? "?" + qs : "");
}
