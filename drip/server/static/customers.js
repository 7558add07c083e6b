// Customers: the list, and one customer's page (both ids, usage charts, recent runs).
import { api, listRuns } from "./api.js";
import { go, h, when } from "./format.js";
import { runsTable } from "./runs.js";
import { meterCharts, periodControls } from "./usage.js";

export async function customersView(view, query) {
  const offset = Number(query.get("offset") || 0);
  const page = await api("/customers", { limit: 50, offset });
  const rows = page.data || [];
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Customers")),
    h("div", { class: "card" }, h("table", { class: "grid", id: "customers-table" },
      h("thead", {}, h("tr", {}, ["Your id", "Drip id", "Status", "Created"].map((c) =>
        h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `#/customers/${encodeURIComponent(c.id)}` },
          c.externalCustomerId || "–")),
        h("td", { class: "mono" }, c.id), h("td", {}, c.status || ""),
        h("td", { class: "mono" }, when(c.createdAt)))) :
        h("tr", {}, h("td", { class: "empty", colspan: 4 }, "No customers yet.")))),
    h("div", { class: "pager" },
      h("button", { class: "ghost", type: "button", disabled: offset === 0,
        onclick: () => go("customers", { offset: String(Math.max(0, offset - 50)) }) }, "← Previous"),
      // the server says whether more follow (50 customers exactly left a Next to an empty page)
      h("button", { class: "ghost", type: "button", id: "customers-next",
        disabled: page.hasMore === undefined ? rows.length < 50 : !page.hasMore,
        onclick: () => go("customers", { offset: String(offset + 50) }) }, "Next →"))));
}

export async function customerView(view, id, query) {
  const c = await api(`/customers/${encodeURIComponent(id)}`);
  const [charts, runs] = await Promise.all([meterCharts(query, c.id),
    listRuns({ customer: c.id }, "", 10)]);
  view.replaceChildren(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, c.externalCustomerId || c.id),
        h("span", { class: "mono muted", id: "customer-ids" }, c.id,
          c.externalCustomerId ? ` · external id ${c.externalCustomerId}` : "")),
      h("a", { href: "#/customers" }, "← all customers")),
    periodControls(query, (f) => go(`customers/${encodeURIComponent(id)}`, f), false),
    charts,
    h("div", { class: "card" }, h("h2", {}, "Recent runs"), runsTable(runs.runs,
      { showCustomer: false }),
    h("p", {}, h("a", { href: `#/runs?customer=${encodeURIComponent(c.id)}` }, "All runs →"))));
}
