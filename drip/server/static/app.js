// The dashboard's router: `#/runs`, `#/runs/<id>`, `#/usage`, `#/customers`, `#/customers/<id>`.
import * as keys from "./api.js";
import { customerView, customersView } from "./customers.js";
import { route } from "./format.js";
import { runsView } from "./runs.js";
import { usageView } from "./usage.js";
import { runView } from "./waterfall.js";

const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function signedIn(k) {
  $("signin").hidden = Boolean(k);
  $("who").hidden = !k;
  $("key-badge").textContent = keys.masked(k);
}

async function render() {
  keys.takeKeyFromFragment();  // on load and when a link with `#key=` is followed
  const k = keys.key();
  signedIn(k);
  const view = $("view");
  const { path, query } = route();
  const tab = path[0] || "runs";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("on", a.dataset.tab === tab);
  }
  showError("");
  if (!k) { view.replaceChildren(); return; }
  if (keys.isPublic(k)) { view.replaceChildren(); showError(keys.PUBLIC_KEY_MESSAGE); return; }
  view.setAttribute("aria-busy", "true");
  try {
    if (tab === "runs" && path[1]) await runView(view, path[1]);
    else if (tab === "usage") await usageView(view, query);
    else if (tab === "customers" && path[1]) await customerView(view, path[1], query);
    else if (tab === "customers") await customersView(view, query);
    else await runsView(view, query);
  } catch (e) {
    view.replaceChildren();
    showError(e.message || String(e));
  } finally {
    view.removeAttribute("aria-busy");
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  keys.setKey($("key-input").value);
  $("key-input").value = "";
  render();
});
$("signout").addEventListener("click", () => { keys.forgetKey(); render(); });
window.addEventListener("hashchange", render);
render();
