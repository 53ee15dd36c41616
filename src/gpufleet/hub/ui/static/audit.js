// Audit page: GET /api/v1/audit, one row per command attempt with each node's result or refusal.
import { $, esc, when, setupTheme } from "./common.js";

setupTheme();

function selector(s) {
  if (!s) return "—";
  const parts = [];
  if (s.nodes) parts.push(`nodes ${s.nodes}`);
  if (s.names) parts.push(`${s.names.length} ticked`);
  for (const [k, v] of Object.entries(s.labels || {})) parts.push(`${k}=${v}`);
  return parts.join(", ") || "—";
}

function results(run) {
  if (!run.results.length) return `<span class="muted">${esc(run.status || "")}</span>`;
  const items = run.results.map((r) => `<li><b>${esc(r.node)}</b> <span class="badge res-${esc(r.status)}">${esc(r.status)}</span>
    ${r.exit_code == null ? "" : `exit ${esc(r.exit_code)}`} <span class="muted">${esc(r.reason || "")}</span></li>`).join("");
  const cancel = run.cancelled_by ? `<p class="muted">cancelled by ${esc(run.cancelled_by)}</p>` : "";
  return `<details><summary>${run.results.length} node(s)</summary><ul>${items}</ul></details>${cancel}`;
}

async function refresh() {
  const since = $("#a-since").value;
  const r = await fetch(`/api/v1/audit?since=${encodeURIComponent(since)}`);
  if (!r.ok) {
    let detail = `HTTP ${r.status}`;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* keep status */ }
    $("#a-count").textContent = `cannot read the audit log: ${detail}`;
    return;
  }
  const { runs } = await r.json();
  $("#a-count").textContent = `${runs.length} attempt(s)`;
  $("#a-runs tbody").innerHTML = runs.map((run) => `<tr data-run="${esc(run.id)}">
    <td title="${esc(run.id)}">${esc(when(run.at))}</td><td>${esc(run.who ?? "— (no such run: a node's report)")}</td>
    <td class="mono">${esc((run.argv || []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" "))}</td>
    <td>${esc(selector(run.selector))}</td><td>${results(run)}</td></tr>`).join("")
    || '<tr><td colspan="5" class="muted">No command attempts in this period.</td></tr>';
  $("#conn").dataset.state = "live";
  $("#conn").textContent = "live";
}

$("#a-since").addEventListener("change", refresh);
refresh().then(() => { document.body.dataset.ready = "1"; });
setInterval(refresh, 10000);
