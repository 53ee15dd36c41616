// Alerts page: shown once the hub has an alerts API (GET /api/v1/alerts). It renders whatever
// fields the API returns, firing first, so it keeps working while that API is still taking shape.
import { $, esc, when } from "./common.js";

async function load() {
  try {
    const r = await fetch("/api/v1/alerts");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const body = await r.json();
    const list = Array.isArray(body) ? body : body.alerts || body.data || [];
    if (!list.length) { $("#a-list").innerHTML = `<p class="muted">No alert is firing.</p>`; return; }
    const keys = [...new Set(list.flatMap((a) => Object.keys(a)))];
    const order = (a) => ((a.state || a.status) === "firing" ? 0 : 1);
    list.sort((a, b) => order(a) - order(b));
    const cell = (k, v) => (typeof v === "number" && /(_at|since|time)/.test(k) ? when(v) : typeof v === "object" ? JSON.stringify(v) : v);
    $("#a-list").innerHTML = `<table><thead><tr>${keys.map((k) => `<th>${esc(k)}</th>`).join("")}</tr></thead><tbody>${
      list.map((a) => `<tr>${keys.map((k) => `<td>${esc(cell(k, a[k]))}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
    $("#conn").dataset.state = "live";
    $("#conn").textContent = "live";
  } catch (e) {
    $("#conn").dataset.state = "reconnecting";
    $("#conn").textContent = "reconnecting…";
  }
}
load();
setInterval(load, 5000);
document.body.dataset.ready = "1";
