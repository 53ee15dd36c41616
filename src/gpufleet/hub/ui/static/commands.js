// Commands page: pick nodes, run a command on them (POST /api/v1/commands), watch each node's result
// arrive over server-sent events (GET /api/v1/commands/ID/events), cancel what has not finished.
import { $, esc, setupTheme, csrfHeaders } from "./common.js";

setupTheme();
let targets = [];
let current = null; // { id, es }

async function call(method, url, body) {
  const r = await fetch(url, { method, headers: { "Content-Type": "application/json", ...csrfHeaders() },
    body: body && JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch (e) { /* no body */ }
  if (!r.ok) throw new Error(j && typeof j.detail === "string" ? j.detail : `HTTP ${r.status}`);
  return j;
}

// Words of a command line as a shell would split them (quotes, backslashes), but nothing else:
// no variables, globs or pipes. The hub runs argv without a shell, so what you see is what runs.
export function splitArgs(line) {
  const out = [];
  let cur = null, quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < line.length && '"\\'.includes(line[i + 1])) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') { quote = c; cur = cur ?? ""; }
    else if (c === "\\" && i + 1 < line.length) { cur = (cur ?? "") + line[++i]; }
    else if (/\s/.test(c)) { if (cur !== null) out.push(cur); cur = null; }
    else cur = (cur ?? "") + c;
  }
  if (quote) throw new Error("unclosed quote");
  if (cur !== null) out.push(cur);
  return out;
}

function globRe(glob) {
  const re = glob.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`);
}

function shown() {
  let re;
  try { re = globRe($("#c-glob").value.trim() || "*"); } catch (e) { re = /^$/; }
  const [lk, ...rest] = $("#c-label").value.split("=");
  const lv = rest.join("=");
  return targets.filter((n) => re.test(n.name) && (!lk.trim() || (n.labels || {})[lk.trim()] === lv.trim()));
}

function renderNodes() {
  const rows = shown();
  const all = $("#c-all").checked;
  $("#c-nodes tbody").innerHTML = rows.map((n) => `<tr>
    <td><input type="checkbox" name="node" value="${esc(n.name)}" aria-label="run on ${esc(n.name)}"
      ${n.fetching ? "" : "disabled"} ${n.fetching && all ? "checked" : ""}></td>
    <td><a href="/nodes/${encodeURIComponent(n.name)}">${esc(n.name)}</a></td>
    <td>${esc(n.status)}</td>
    <td>${n.fetching ? "accepting" : '<span class="muted">not accepting (agent without --allow-commands, or down)</span>'}</td>
    <td class="muted">${esc(Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", "))}</td></tr>`).join("")
    || '<tr><td colspan="5" class="muted">No node matches.</td></tr>';
  count();
}

function ticked() { return [...document.querySelectorAll('#c-nodes input[name="node"]:checked')].map((i) => i.value); }
function count() { $("#c-count").textContent = `${ticked().length} of ${shown().length} ticked`; }

function preview() {
  try { const a = splitArgs($("#c-cmd").value); $("#c-argv").textContent = a.length ? JSON.stringify(a) : "—"; }
  catch (e) { $("#c-argv").textContent = e.message; }
}

function resultRow(r) {
  const out = [r.stdout, r.stderr ? `[stderr]\n${r.stderr}` : ""].filter(Boolean).join("\n");
  const dur = r.duration == null ? "—" : `${Number(r.duration).toFixed(2)} s`;
  return `<tr data-node="${esc(r.node)}" data-status="${esc(r.status)}"><td>${esc(r.node)}</td>
    <td><span class="badge res-${esc(r.status)}">${esc(r.status)}</span> <span class="muted">${esc(r.reason || "")}</span></td>
    <td>${r.exit_code == null ? "—" : esc(r.exit_code)}</td><td>${dur}</td>
    <td>${out ? `<pre class="mono out">${esc(out)}</pre>` : ""}</td></tr>`;
}

function summary(done, counts, total) {
  const parts = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
  $("#c-summary").textContent = `${done ? "done" : "running"}: ${parts || "waiting"} (${Object.values(counts).reduce((a, b) => a + b, 0)} of ${total})`;
}

function follow(run) {
  const body = $("#c-results tbody");
  body.innerHTML = "";
  const counts = {};
  const es = new EventSource(`/api/v1/commands/${encodeURIComponent(run.id)}/events`);
  current = { id: run.id, es };
  $("#c-cancel").disabled = false;
  summary(false, counts, run.nodes.length);
  es.addEventListener("result", (e) => {
    const r = JSON.parse(e.data);
    counts[r.status] = (counts[r.status] || 0) + 1;
    body.insertAdjacentHTML("beforeend", resultRow(r));
    summary(false, counts, run.nodes.length);
  });
  es.addEventListener("done", () => {
    es.close();
    current = null;
    $("#c-cancel").disabled = true;
    summary(true, counts, run.nodes.length);
    document.body.dataset.runDone = run.id;
  });
  es.onerror = () => { if (es.readyState === EventSource.CLOSED) $("#c-summary").textContent = "lost the result stream; see the audit log"; };
}

$("#c-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  let argv;
  try { argv = splitArgs($("#c-cmd").value); } catch (e) { $("#c-summary").textContent = e.message; return; }
  const names = ticked();
  if (!argv.length || !names.length) { $("#c-summary").textContent = !argv.length ? "type a command" : "tick at least one node"; return; }
  if (current) current.es.close();
  try {
    const run = await call("POST", "/api/v1/commands", { argv, names, timeout: Number($("#c-timeout").value) || 30 });
    follow(run);
  } catch (e) { $("#c-summary").textContent = `Refused: ${e.message}`; }
});

$("#c-cancel").addEventListener("click", async () => {
  if (!current) return;
  try { await call("POST", `/api/v1/commands/${encodeURIComponent(current.id)}/cancel`); }
  catch (e) { $("#c-summary").textContent = `Cancel failed: ${e.message}`; }
});

for (const id of ["#c-glob", "#c-label"]) $(id).addEventListener("input", renderNodes);
$("#c-all").addEventListener("change", renderNodes);
$("#c-nodes").addEventListener("change", count);
$("#c-cmd").addEventListener("input", preview);

async function load() {
  try {
    targets = (await call("GET", "/api/v1/commands/targets")).nodes;
    $("#conn").dataset.state = "live";
    $("#conn").textContent = "live";
  } catch (e) {
    $("#c-count").textContent = `cannot list nodes: ${e.message}`;
  }
  renderNodes();
}
load().then(() => { document.body.dataset.ready = "1"; });
