// Usage: quantity over time per meter (one small chart each, since meters have different
// units), for all customers or one, and a per-customer table for the same period.
import { usageRows } from "./api.js";
import { compact, go, h, num, s } from "./format.js";
import { filterError, refusedFilter } from "./runs.js";

const RANGES = { "24h": [24 * 3600e3, "hour"], "7d": [7 * 86400e3, "day"],
  "30d": [30 * 86400e3, "day"], "90d": [90 * 86400e3, "day"] };
const STEP = { hour: 3600e3, day: 86400e3 };

export function period(query) {
  const [len, defBucket] = RANGES[query.get("range") || "7d"] || RANGES["7d"];
  const bucket = query.get("bucket") || defBucket;
  const step = STEP[bucket];
  // half-open [since, until) on bucket boundaries (UTC), ending with the current bucket
  const until = Math.floor(Date.now() / step) * step + step;
  const since = Math.floor((until - len) / step) * step;
  return { bucket, step, since, until,
    sinceIso: new Date(since).toISOString(), untilIso: new Date(until).toISOString() };
}

const bucketOf = (row) => Date.parse(row.day || row.hour || row.bucket || row.period || "");
const isMeter = (row) => !row.kind || row.kind === "meter";

function label(ms, bucket) {
  const d = new Date(ms);
  const mon = d.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  return bucket === "hour" ? `${String(d.getUTCHours()).padStart(2, "0")}:00`
    : `${mon} ${d.getUTCDate()}`;
}

export function barChart(points, bucket, meter) {
  const W = 560, H = 170, L = 40, B = 20, T = 8;
  const max = Math.max(...points.map((p) => p.q), 0) || 1;
  const bw = (W - L) / points.length;
  const y = (q) => T + (H - T - B) * (1 - q / max);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`,
    role: "img", "aria-label": `${meter} per ${bucket}`, "data-meter": meter });
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { class: "axis", x1: L, x2: W, y1: y(max * f), y2: y(max * f) }),
      s("text", { x: L - 6, y: y(max * f) + 3, "text-anchor": "end" }, compact(max * f)));
  }
  const every = Math.ceil(points.length / 8);
  points.forEach((p, i) => {
    const x = L + i * bw;
    const bar = s("rect", { class: "bar", x: x + bw * 0.15, width: Math.max(bw * 0.7, 1),
      y: y(p.q), height: Math.max(H - B - y(p.q), p.q > 0 ? 1 : 0), "data-q": p.q });
    bar.append(s("title", {}, `${label(p.t, bucket)}: ${num(p.q)}`));
    svg.append(bar);
    if (i % every === 0) {
      svg.append(s("text", { x: x + bw / 2, y: H - 5, "text-anchor": "middle" },
        label(p.t, bucket)));
    }
  });
  return svg;
}

export async function meterCharts(query, customer) {
  const p = period(query);
  const { body, rows } = await usageRows(
    { since: p.sinceIso, until: p.untilIso, customerId: customer }, ["meter", p.bucket]);
  const byMeter = new Map();
  for (const r of rows.filter(isMeter)) {
    const at = Math.floor(bucketOf(r) / p.step) * p.step;
    if (!byMeter.has(r.meter)) byMeter.set(r.meter, new Map());
    const m = byMeter.get(r.meter);
    m.set(at, (m.get(at) || 0) + r.quantity);
  }
  if (!rows.length && (body.meters || []).length && !body.groups) {
    return h("p", { class: "muted" }, "This server does not group usage by time.");
  }
  const cards = [...byMeter.keys()].sort().map((meter) => {
    const m = byMeter.get(meter);
    const points = [];
    for (let at = p.since; at < p.until; at += p.step) points.push({ t: at, q: m.get(at) || 0 });
    const total = points.reduce((a, b) => a + b.q, 0);
    return h("div", { class: "card chart-card", dataset: { meter } },
      h("h3", {}, meter), h("div", { class: "total" }, num(total), " ",
        h("small", {}, `in ${points.length} ${p.bucket}s`)),
      barChart(points, p.bucket, meter));
  });
  return cards.length ? h("div", { class: "kpis", id: "charts" }, cards)
    : h("p", { class: "empty", id: "charts" }, "No usage in this period.");
}

async function customerTable(query) {
  const p = period(query);
  // each group names its customer's own id: no listing of the account's customers
  const { rows } = await usageRows({ since: p.sinceIso, until: p.untilIso }, ["customer", "meter"]);
  const meters = [...new Set(rows.filter(isMeter).map((r) => r.meter))].sort();
  const people = new Map();
  for (const r of rows.filter(isMeter)) {
    const id = r.customerId;
    if (!people.has(id)) people.set(id, { id, ext: r.externalCustomerId, q: {} });
    people.get(id).q[r.meter] = (people.get(id).q[r.meter] || 0) + r.quantity;
  }
  return h("table", { class: "grid", id: "customer-usage" },
    h("thead", {}, h("tr", {}, h("th", {}, "Customer"),
      meters.map((m) => h("th", { class: "num" }, m)))),
    h("tbody", {}, people.size ? [...people.values()].map((c) => h("tr", {},
      h("td", {}, h("a", { href: `#/customers/${encodeURIComponent(c.id)}` }, c.ext || c.id),
        c.ext ? h("div", { class: "muted mono" }, c.id) : null),
      meters.map((m) => h("td", { class: "num" }, num(c.q[m] || 0))))) :
      h("tr", {}, h("td", { class: "empty", colspan: meters.length + 1 }, "No usage."))));
}

export function periodControls(query, onChange, withCustomer) {
  const range = h("select", { name: "range" }, Object.keys(RANGES).map((r) =>
    h("option", { value: r, selected: (query.get("range") || "7d") === r }, `last ${r}`)));
  const bucket = h("select", { name: "bucket" }, ["", "hour", "day"].map((b) =>
    h("option", { value: b, selected: (query.get("bucket") || "") === b }, b || "auto")));
  const customer = withCustomer && h("input", { name: "customer", placeholder: "all customers",
    value: query.get("customer") || "" });
  const form = h("form", { class: "filters", id: "usage-filters" },
    customer && h("label", {}, "Customer (cus_… or your id)", customer),
    h("label", {}, "Period", range), h("label", {}, "Buckets", bucket),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    onChange({ customer: customer ? customer.value.trim() : "", range: range.value,
      bucket: bucket.value });
  });
  return form;
}

export async function usageView(view, query) {
  const customer = query.get("customer") || "";
  const p = period(query);
  let [charts, table] = [null, null];
  try {
    [charts, table] = await Promise.all([meterCharts(query, customer),
      customer ? null : customerTable(query)]);
  } catch (e) {
    // an unknown customer: said under the filters, which stay to be corrected
    if (!refusedFilter(e)) throw e;
    charts = filterError(e);
  }
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Usage"), h("span", { class: "muted" },
      `${new Date(p.since).toISOString().slice(0, 16).replace("T", " ")} → ` +
      `${new Date(p.until).toISOString().slice(0, 16).replace("T", " ")} UTC, per ${p.bucket}`)),
    periodControls(query, (f) => go("usage", f), true),
    charts,
    // replaceChildren writes a null as the text "null": no table, no node
    ...(table ? [h("div", { class: "card" }, h("h2", {}, "Per customer, this period"), table)]
      : []));
}
