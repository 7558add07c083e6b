// A run's page: facts, the error, and a waterfall of its events (nested by parent event) with
// its child runs inline, on one time axis.
import { api, listRuns } from "./api.js";
import { customerLabel, h, ms, num, pill, t, when } from "./format.js";

// the most events one waterfall draws, its run's and its child runs' together (10,000 rows
// render in a few seconds); past it the page says how many it left out, never a silently
// shorter run
export const MAX_EVENTS = 10000;
const PAGE_EVENTS = 5000;

async function timelineOf(runId, budget) {
  // the timeline is paged: follow its cursor (one page of 5,000 showed half of a big run),
  // while the waterfall's budget lasts (300 child runs of 10,000 events each would not draw)
  const path = `/runs/${encodeURIComponent(runId)}/timeline`;
  let first = null;
  let events = [];
  let cursor = null;
  let more = false;
  do {
    const want = Math.min(PAGE_EVENTS, budget.left);
    budget.left -= want;
    const page = await api(path, { limit: Math.max(want, 1), cursor });
    first = first || page;
    const all = page.events || [];
    const kept = all.slice(0, want);
    budget.left += want - kept.length;
    events = events.concat(kept);
    more = Boolean(page.hasMore) || all.length > kept.length;
    cursor = page.nextCursor;
  } while (more && cursor && budget.left > 0);
  return { ...first, events, truncated: more };
}

// the most child runs drawn inline under one run (each is one more timeline to read)
export const MAX_CHILD_RUNS = 300;

async function childRuns(runId, depth, parent, budget) {
  if (depth > 4) return [];  // runs nested deeper than this open on their own page
  // every page of them (the first 100 only, without a word, was all a big fan-out showed)
  let kids = [];
  let cursor = "";
  let pages = 0;
  do {
    const page = await listRuns({ parentRunId: runId }, cursor, 100);
    // the filter is applied here too, for servers that do not know `parentRunId`
    kids = kids.concat(page.runs.filter((r) => r.parentRunId === runId));
    cursor = page.next;
  } while (cursor && kids.length < MAX_CHILD_RUNS && ++pages < 20);
  if (cursor || kids.length > MAX_CHILD_RUNS) parent.moreChildRuns = true;
  // the newest (pages are newest first), read oldest first, as drawn: one after the other,
  // so the event budget goes to the runs in order (read all at once, two took it all)
  kids = kids.slice(0, MAX_CHILD_RUNS).reverse();
  const out = [];
  for (const r of kids) {
    const tl = await timelineOf(r.id, budget);
    out.push({ timeline: tl, children: await childRuns(r.id, depth + 1, tl, budget) });
  }
  return out;
}

/** Rows in display order: {kind, depth, start, end, item, last[]} for events and child runs. */
function rowsOf(node, depth, out, guides) {
  const events = node.timeline.events || [];
  const ids = new Set(events.map((e) => e.id));
  const kids = new Map();
  const items = [];
  for (const e of events) {
    const p = e.parentEventId && ids.has(e.parentEventId) ? e.parentEventId : null;
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push({ kind: "event", item: e, start: t(e.timestamp) });
  }
  for (const c of node.children) {
    items.push({ kind: "run", item: c, start: t(c.timeline.startedAt) });
  }
  const top = [...(kids.get(null) || []), ...items].sort((a, b) => a.start - b.start);
  const walk = (list, d, g) => list.forEach((entry, i) => {
    const last = i === list.length - 1;
    if (entry.kind === "event") {
      const e = entry.item;
      const end = e.durationMs != null ? entry.start + e.durationMs : null;
      out.push({ kind: "event", depth: d, start: entry.start, end, item: e, guides: [...g, last] });
      walk((kids.get(e.id) || []).sort((a, b) => a.start - b.start), d + 1, [...g, last]);
    } else {
      const tl = entry.item.timeline;
      out.push({ kind: "run", depth: d, start: t(tl.startedAt), end: t(tl.endedAt), item: tl,
        guides: [...g, last] });
      rowsOf(entry.item, d + 1, out, [...g, last]);
    }
  });
  walk(top, depth, guides);
  return out;
}

function guideText(guides) {
  // top-level rows carry no guide; deeper ones draw the tree like `drip timeline` does
  const g = guides.slice(1);
  let s = "";
  for (let i = 0; i < g.length - 1; i++) s += g[i] ? "   " : "│  ";
  return g.length ? s + (g[g.length - 1] ? "└─ " : "├─ ") : "";
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined).map(([k, v, wide]) =>
    h("div", { class: wide ? "wide" : null }, h("dt", {}, k),
      h("dd", { title: typeof v === "string" ? v : null }, v ?? "–"))));
}

function detail(row) {
  const e = row.item;
  const body = row.kind === "run"
    ? { runId: e.runId, workflow: e.workflowName, status: e.status, startedAt: e.startedAt,
      endedAt: e.endedAt, durationMs: e.durationMs, errorCode: e.errorCode,
      errorMessage: e.errorMessage, summary: e.summary }
    : e;
  const shown = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== null));
  return h("div", { class: "detail", id: "detail" },
    h("b", {}, row.kind === "run" ? `child run ${e.runId}` : `${e.eventType} · ${e.id}`),
    h("pre", {}, JSON.stringify(shown, null, 2)));
}

export function waterfall(rows, t0, t1) {
  const span = Math.max(t1 - t0, 1);
  const pct = (v) => `${Math.max(0, Math.min(100, ((v - t0) / span) * 100))}%`;
  const axis = h("div", { class: "wf-axis" }, h("div", {}, "event"),
    h("div", { class: "wf-ticks" }, [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const el = h("span", {}, ms(span * f));
      el.style.left = `${f * 100}%`;
      return el;
    })), h("div", { class: "wf-dur" }, "duration"));
  const panel = h("div", {});
  const lines = rows.map((row) => {
    const failed = row.kind === "event" ? row.item.outcome === "error"
      : ["FAILED", "TIMEOUT"].includes(row.item.status);
    const bar = h("div", { class: "wf-bar" });
    if (row.kind === "run") bar.classList.add("run");
    else if (row.end === null) bar.classList.add("point");
    else bar.classList.add(failed ? "error" : "ok");
    bar.style.left = pct(row.start);
    if (row.end !== null && Number.isFinite(row.end)) {
      bar.style.width = `${Math.max(((row.end - row.start) / span) * 100, 0.3)}%`;
    }
    const e = row.item;
    const name = row.kind === "run" ? `run · ${e.workflowName}` : e.eventType;
    const sub = row.kind === "run" ? pill(e.status)
      : h("span", { class: "wf-meter" }, e.meter ? `${num(e.quantity)} ${e.units || e.meter}` : "");
    const dur = row.end !== null && Number.isFinite(row.end) ? ms(row.end - row.start) : "";
    bar.title = `${name} · ${dur || "instant"}` + (failed && e.errorType ? ` · ${e.errorType}` : "");
    const el = h("div", {
      class: `wf-row${row.kind === "run" ? " is-run" : ""}${failed ? " failed" : ""}`,
      dataset: { depth: row.depth, kind: row.kind, id: e.id || e.runId },
    },
    h("div", { class: "wf-label" }, h("span", { class: "wf-guide" }, guideText(row.guides)),
      h("span", { class: "wf-name" }, name), sub,
      failed && row.kind === "event" ? h("span", { class: "badge-err" }, e.errorType || "error")
        : null),
    h("div", { class: "wf-track" }, bar), h("div", { class: "wf-dur" }, dur));
    el.addEventListener("click", () => {
      for (const r of el.parentElement.querySelectorAll(".sel")) r.classList.remove("sel");
      el.classList.add("sel");
      panel.replaceChildren(detail(row));
    });
    return el;
  });
  return h("div", {}, h("div", { class: "wf", id: "waterfall" }, axis, lines), panel);
}

function cut(tree) {
  // a run with more events than the waterfall draws says so, with the counts
  const runs = [];
  const walk = (node) => {
    if (node.timeline.truncated || node.timeline.moreChildRuns) runs.push(node.timeline);
    node.children.forEach(walk);
  };
  walk(tree);
  if (!runs.length) return null;
  const rest = runs.length > 3 ? `And ${num(runs.length - 3)} more runs cut the same way.` : "";
  return h("p", { class: "notice", id: "waterfall-cut" }, runs.slice(0, 3).map((tl) => {
    const total = tl.summary?.totalEvents;
    const of = total != null ? ` of ${num(total)}` : "";
    const events = tl.truncated ? `showing the first ${num(tl.events.length)}${of} events ` +
      `(\`drip timeline ${tl.runId}\` lists them all)` : "";
    const kids = tl.moreChildRuns ? `showing the newest ${num(MAX_CHILD_RUNS)} of its child ` +
      "runs (the runs list shows them all)" : "";
    return `${tl.runId}: ${[events, kids].filter(Boolean).join("; ")}. `;
  }), rest);
}

export async function runView(view, runId) {
  const budget = { left: MAX_EVENTS };
  const root = await timelineOf(runId, budget);
  const tree = { timeline: root, children: await childRuns(runId, 0, root, budget) };
  const rows = rowsOf(tree, 0, [], []);
  const starts = [t(root.startedAt), ...rows.map((r) => r.start)].filter(Number.isFinite);
  const ends = [t(root.endedAt), ...rows.map((r) => r.end ?? r.start)].filter(Number.isFinite);
  if (root.status === "RUNNING") ends.push(Date.now());
  // a loop, not Math.min(...starts): spreading 100,000s of values overflows the stack
  const t0 = starts.reduce((a, b) => Math.min(a, b), Infinity);
  const t1 = ends.reduce((a, b) => Math.max(a, b), -Infinity);
  const s = root.summary || {};
  view.replaceChildren(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, root.workflowName || "run", " ", pill(root.status)),
        h("span", { class: "mono muted" }, root.runId)),
      h("a", { href: "#/runs" }, "← all runs")),
    h("div", { class: "card" },
      facts([
        ["customer", h("a", { href: `#/customers/${encodeURIComponent(root.customerId)}` },
          customerLabel(root.customerId, root.externalCustomerId || root.customerName)), true],
        ["started", when(root.startedAt)],
        ["duration", ms(root.durationMs)],
        ["events", `${s.totalEvents ?? rows.length}`],
        ["quantity", s.totalQuantity],
        ["charged (USDC)", s.totalChargedUsdc],
        ["OpenTelemetry trace id", h("span", { class: "mono", id: "trace-id" },
          root.correlationId || "–"), true],
        ["parent run", root.parentRunId ? h("a", { href: `#/runs/${root.parentRunId}`,
          class: "mono" }, root.parentRunId) : "–"],
      ]),
      root.errorCode || root.errorMessage ? h("div", { class: "run-error", id: "run-error" },
        h("b", {}, root.errorCode || "error"), ": ", root.errorMessage || "") : null),
    h("div", { class: "card" }, h("h2", {}, "Waterfall"), cut(tree),
      rows.length ? waterfall(rows, t0, t1) : h("p", { class: "empty" }, "No events yet.")));
}
