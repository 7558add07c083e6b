// The runs list: filters in the URL (so a view can be shared), cursor paging.
import { ApiError, listRuns } from "./api.js";
import { durationOf, go, h, ms, pill, when } from "./format.js";

const PAGE = 25;
const STATUSES = ["", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PENDING"];

function toIso(local) {
  // <input type=datetime-local> gives local time without a zone
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}
function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
}

export function filterBar(query, onApply, fields) {
  const inputs = {};
  const field = (name, label, el) => { inputs[name] = el; return h("label", {}, label, el); };
  const want = new Set(fields);
  const bar = h("form", { class: "filters", id: "filters" },
    want.has("customer") && field("customer", "Customer (cus_… or your id)",
      h("input", { name: "customer", value: query.get("customer") || "", placeholder: "any" })),
    want.has("workflow") && field("workflow", "Workflow",
      h("input", { name: "workflow", value: query.get("workflow") || "", placeholder: "any" })),
    want.has("status") && field("status", "Status", h("select", { name: "status" },
      STATUSES.map((s) => h("option", { value: s, selected: s === (query.get("status") || "") },
        s || "any")))),
    want.has("since") && field("since", "Since", h("input", { type: "datetime-local",
      name: "since", value: toLocal(query.get("since")) })),
    want.has("until") && field("until", "Until", h("input", { type: "datetime-local",
      name: "until", value: toLocal(query.get("until")) })),
    h("button", { type: "submit" }, "Apply"));
  bar.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const out = {};
    for (const [name, el] of Object.entries(inputs)) {
      out[name] = el.type === "datetime-local" ? toIso(el.value) : el.value.trim();
    }
    onApply(out);
  });
  return bar;
}

/** An answer that refuses what the filters ask (404 unknown customer, 422 bad value). */
export const refusedFilter = (e) => e instanceof ApiError && [400, 404, 422].includes(e.status);

export const filterError = (e) => h("p", { class: "run-error", id: "filter-error" }, e.message);

export function runsTable(runs, { showCustomer = true } = {}) {
  const head = ["Run", "Workflow", showCustomer && "Customer", "Status", "Started", "Duration",
    "Events"].filter(Boolean);
  return h("table", { class: "grid", id: "runs-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { class: ["Duration", "Events"]
      .includes(c) ? "num" : "" }, c)))),
    h("tbody", {}, runs.length ? runs.map((r) => h("tr", { dataset: { run: r.id } },
      h("td", { class: "run-id" }, h("a", { href: `#/runs/${encodeURIComponent(r.id)}`,
        class: "mono", title: r.id }, r.id),
        r.parentRunId ? h("div", { class: "muted small" }, "↳ child run") : null),
      h("td", { class: "nowrap" }, r.workflowName || r.workflowId),
      showCustomer && h("td", {}, h("a", { href: `#/customers/${encodeURIComponent(r.customerId)}` },
        r.externalCustomerId || r.customerId)),
      h("td", {}, pill(r.status)),
      h("td", { class: "mono nowrap" }, when(r.startedAt || r.createdAt)),
      h("td", { class: "num" }, ms(durationOf(r))),
      h("td", { class: "num" }, r.eventCount ?? r.totals?.eventCount ?? "–"))) :
      h("tr", {}, h("td", { colspan: head.length, class: "empty" }, "No runs match."))));
}

export async function runsView(view, query) {
  const filters = Object.fromEntries(["customer", "workflow", "status", "since", "until"]
    .map((k) => [k, query.get(k) || ""]));
  // the cursor trail lives in the URL too, so Back works and a page can be reloaded
  const trail = (query.get("trail") || "").split(",").filter(Boolean);
  const cursor = trail.length ? trail[trail.length - 1] : "";
  // a filter the server refuses (an unknown customer, a bad time) is said under the filters,
  // which stay to be corrected: the whole page was replaced by the message
  let page = { runs: [], next: null };
  let refused = null;
  try {
    page = await listRuns(filters, cursor, PAGE);
  } catch (e) {
    if (!refusedFilter(e)) throw e;
    refused = e;
  }
  const pageNo = trail.length + 1;
  const nav = (t) => go("runs", { ...filters, trail: t.join(",") });
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Runs"),
      h("span", { class: "muted" }, "newest first")),
    h("div", { class: "card" },
      filterBar(query, (f) => go("runs", f), ["customer", "workflow", "status", "since", "until"]),
      refused ? filterError(refused) : runsTable(page.runs),
      h("div", { class: "pager" },
        h("button", { class: "ghost", id: "newer", type: "button", disabled: pageNo === 1,
          onclick: () => nav(trail.slice(0, -1)) }, "← Newer"),
        h("span", { class: "muted", id: "page-no" }, `Page ${pageNo}`),
        h("button", { class: "ghost", id: "older", type: "button", disabled: !page.next,
          onclick: () => nav([...trail, page.next]) }, "Older →"))));
}
