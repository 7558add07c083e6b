// The key and the API: the key lives in sessionStorage only (this tab), never in localStorage,
// never in the URL once read, and is shown masked.
const STORE = "drip.key";

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function takeKeyFromFragment() {
  // `/#key=sk_…` (what `drip serve` prints): the fragment never reaches the server
  const m = location.hash.match(/(?:^#|[&?])key=([^&]+)/);
  if (!m) return;
  sessionStorage.setItem(STORE, decodeURIComponent(m[1]));
  const rest = location.hash.replace(/[&?]?key=[^&]+/, "").replace(/^#&/, "#");
  history.replaceState(null, "", location.pathname + (rest.length > 1 ? rest : "#/runs"));
}

export const key = () => sessionStorage.getItem(STORE) || "";
export const setKey = (k) => sessionStorage.setItem(STORE, k.trim());
export const forgetKey = () => sessionStorage.removeItem(STORE);
export const isPublic = (k) => k.startsWith("pk_");

export function masked(k) {
  if (!k) return "";
  const kind = isPublic(k) ? "public" : "secret";
  return `${k.slice(0, 3)}••••${k.slice(-4)} (${kind})`;
}

export const PUBLIC_KEY_MESSAGE =
  "This is a public key (pk_…). Public keys can record usage and runs from a browser or an " +
  "app, but cannot read an account's data. Open the dashboard with a secret key (sk_…): " +
  "`drip keys create` prints a new one.";

export async function api(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") qs.set(k, v);
  }
  const url = "/v1" + path + (qs.toString() ? "?" + qs : "");
  const r = await fetch(url, { headers: { Authorization: "Bearer " + key() } });
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  if (!r.ok) {
    const code = body && (body.code || body.error);
    if (r.status === 403 && code === "SECRET_KEY_REQUIRED") {
      throw new ApiError(403, code, PUBLIC_KEY_MESSAGE);
    }
    if (r.status === 401) {
      throw new ApiError(401, code, "This server does not know this key. " +
        "Paste a secret key of this server (the database `drip serve` was started on).");
    }
    throw new ApiError(r.status, code, (body && body.message) || `HTTP ${r.status} on ${url}`);
  }
  return body;
}

// ---- shapes of the read API, in one place ----

/** One page of runs: `{runs, next}` where `next` is the cursor of the next page or null. */
export async function listRuns(filters, cursor, limit) {
  const body = await api("/runs", {
    limit, cursor, customerId: filters.customer, workflow: filters.workflow,
    status: filters.status, since: filters.since, until: filters.until,
    parentRunId: filters.parentRunId,
  });
  const next = body.nextCursor ?? body.next_cursor ?? null;
  return { runs: body.data || [], next: body.hasMore === false ? null : next };
}

/** Usage rows of the summary grouped by `groupBy` (array), as plain objects with numbers. */
export async function usageRows(params, groupBy) {
  const body = await api("/usage/summary", { ...params, groupBy: groupBy.join(",") });
  const rows = body.groups || body.rows || body.data || [];
  return { body, rows: rows.map((g) => ({ ...(g.key || {}), ...g, quantity: Number(g.quantity) })) };
}
