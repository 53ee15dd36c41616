// Alerts page: GET /api/v1/alerts, silences and notifier health; ack, silence and test actions.
import { $, esc, when, ago, csrfHeaders } from "./common.js";

const SEV = { critical: 0, warning: 1, info: 2 };

function say(text) { $("#a-msg").textContent = text; }

async function call(method, url, body) {
  const r = await fetch(url, { method, headers: { "Content-Type": "application/json", ...csrfHeaders() }, body: body && JSON.stringify(body) });
  if (!r.ok) {
    let detail = `HTTP ${r.status}`;
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* keep status */ }
    throw new Error(detail);
  }
  return r.status === 204 ? null : r.json();
}

function where(l) {
  const parts = [];
  if (l.node) parts.push(`<a href="/nodes/${encodeURIComponent(l.node)}">${esc(l.node)}</a>`);
  if (l.gpu != null && l.node) parts.push(`<a href="/nodes/${encodeURIComponent(l.node)}/gpus/${encodeURIComponent(l.gpu)}">GPU ${esc(l.gpu)}</a>`);
  else if (l.gpu != null) parts.push(`GPU ${esc(l.gpu)}`);
  if (l.mountpoint) parts.push(esc(l.mountpoint));
  return parts.join(" · ") || "hub";
}

function alertRow(a) {
  const l = a.labels || {};
  const since = a.state === "firing" ? a.fired_at : a.state === "pending" ? a.active_at : a.resolved_at;
  const ack = a.ack ? `acked by ${esc(a.ack.by)}` : "";
  const sil = a.silenced ? "silenced" : "";
  return `<tr data-fp="${esc(a.fingerprint)}" data-state="${esc(a.state)}">
    <td><span class="badge st-${esc(a.state)}">${esc(a.state)}</span></td>
    <td><span class="badge sev-${esc(a.severity)}">${esc(a.severity || "—")}</span></td>
    <td><b>${esc(a.alertname)}</b><div class="muted">${esc((a.annotations || {}).summary || (a.annotations || {}).description || "")}</div></td>
    <td>${where(l)}</td>
    <td title="${esc(when(since))}">${esc(ago(since))}</td>
    <td>${[ack, sil].filter(Boolean).join(", ") || "—"}</td>
    <td class="actions">${a.state === "resolved" ? "" : `${a.ack ? `<button data-act="unack">Un-ack</button>` : `<button data-act="ack">Ack</button>`}
      <button data-act="silence">Silence 2 h</button>`}</td></tr>`;
}

let alerts = [];
async function loadAlerts() {
  const state = $("#a-state").value;
  const params = new URLSearchParams();
  if (state && state !== "all") params.set("state", state);
  if ($("#a-sev").value) params.set("severity", $("#a-sev").value);
  const body = await call("GET", `/api/v1/alerts?${params}`);
  alerts = (Array.isArray(body) ? body : body.alerts || []).filter((a) => state || a.state !== "resolved");
  alerts.sort((a, b) => (a.state === "firing" ? 0 : 1) - (b.state === "firing" ? 0 : 1) || (SEV[a.severity] ?? 3) - (SEV[b.severity] ?? 3));
  $("#a-list").innerHTML = alerts.length
    ? `<table class="alerts"><thead><tr><th>State</th><th>Severity</th><th>Alert</th><th>Where</th><th>Since</th><th>Handled</th><th></th></tr></thead>
       <tbody>${alerts.map(alertRow).join("")}</tbody></table>`
    : `<p class="muted">No alert matches: all quiet.</p>`;
}

async function loadSilences() {
  const body = await call("GET", "/api/v1/silences");
  const list = (body.silences || []).filter((s) => s.status !== "expired");
  $("#a-silences").innerHTML = list.length
    ? `<table><thead><tr><th>Matchers</th><th>By</th><th>Until</th><th>Comment</th><th></th></tr></thead><tbody>${list.map((s) => `<tr>
        <td><code>${esc((s.matchers || []).map((m) => `${m.label}${m.op}"${m.value}"`).join(", "))}</code></td>
        <td>${esc(s.author)}</td><td>${esc(when(s.ends_at))}</td><td>${esc(s.comment || "")}</td>
        <td><button data-expire="${esc(s.id)}">Expire</button></td></tr>`).join("")}</tbody></table>`
    : `<p class="muted">No active silence.</p>`;
}

async function loadNotifiers() {
  const body = await call("GET", "/api/v1/notifications");
  const list = body.targets || [];
  $("#a-notifiers").innerHTML = list.length
    ? `<table><thead><tr><th>Receiver</th><th>Target</th><th>Sent</th><th>Failures</th><th>Last error</th></tr></thead><tbody>${list.map((n) => `<tr>
        <td>${esc(n.receiver)}</td><td><code>${esc(n.name)}</code> (${esc(n.kind)})</td><td>${esc(n.sent)}</td>
        <td>${esc(n.failures)}${n.dropped ? `, ${esc(n.dropped)} dropped` : ""}</td><td>${esc(n.last_error || "—")}</td></tr>`).join("")}</tbody></table>`
    : `<p class="muted">No notifier configured: alerts show here and in GET /api/v1/alerts. See docs/alerts.md to add apprise URLs or an Alertmanager.</p>`;
}

async function refresh() {
  try {
    await Promise.all([loadAlerts(), loadSilences(), loadNotifiers()]);
    $("#conn").dataset.state = "live";
    $("#conn").textContent = "live";
  } catch (e) {
    $("#conn").dataset.state = "reconnecting";
    $("#conn").textContent = "reconnecting…";
  }
}

$("#a-list").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-act]");
  if (!btn) return;
  const a = alerts.find((x) => x.fingerprint === btn.closest("tr").dataset.fp);
  try {
    if (btn.dataset.act === "ack") await call("POST", `/api/v1/alerts/${a.fingerprint}/ack`, {});
    if (btn.dataset.act === "unack") await call("DELETE", `/api/v1/alerts/${a.fingerprint}/ack`);
    if (btn.dataset.act === "silence") {
      const m = { alertname: a.alertname };
      for (const k of ["node", "gpu", "mountpoint"]) if (a.labels && a.labels[k] != null) m[k] = a.labels[k];
      await call("POST", "/api/v1/silences", { matchers: m, duration: "2h", comment: "from the alerts page" });
    }
    say("Done.");
  } catch (e) { say(`Refused: ${e.message}`); }
  refresh();
});

$("#a-silences").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-expire]");
  if (!btn) return;
  try { await call("DELETE", `/api/v1/silences/${btn.dataset.expire}`); say("Silence expired."); } catch (e) { say(`Refused: ${e.message}`); }
  refresh();
});

$("#a-test").addEventListener("click", async () => {
  try { const r = await call("POST", "/api/v1/notifications/test", {}); say(`Test notification: ${JSON.stringify(r)}`); }
  catch (e) { say(`Test notification failed: ${e.message}`); }
});
$("#a-state").addEventListener("change", refresh);
$("#a-sev").addEventListener("change", refresh);

refresh().then(() => { document.body.dataset.ready = "1"; });
setInterval(refresh, 5000);
