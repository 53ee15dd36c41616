// Node page: host details, every accelerator, history charts and the process table, all live.
import { $, esc, initial, live, frameScheduler, sortable, gpuHealth, bytes, rate, pct, celsius, watts, hertz, duration, when, ago, num, heat, ipct } from "./common.js";
import { ChartSet, rangePicker } from "./charts.js";
import { ownerText } from "./owner.js";

const init = initial();
const name = init.node.name;
let snap = init.snapshotJson;
let prev = null; // the snapshot before, for network and disk rates
let status = init.node;

const bar = (ratio, cls = "") => `<span class="bar ${cls}"><i style="width:${Math.round((ratio || 0) * 100)}%"></i></span>`;
const kv = (rows) => rows.filter((r) => r[1] != null && r[1] !== "").map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("");

function renderStatus() {
  const st = $("#n-status");
  st.dataset.status = status.status;
  st.textContent = status.status;
  const b = $("#n-banner");
  if (status.status !== "up") {
    b.hidden = false;
    b.textContent = status.last_seen ? `No data from this node since ${when(status.last_seen)} (${ago(status.last_seen)}): values below are its last report.`
      : "This node has not sent any data yet.";
  } else b.hidden = true;
  if (status.error) { b.hidden = false; b.textContent = status.error; }
}

// The node's clock minus the hub's, measured by the hub at each push.
function clockText(skew) {
  if (skew == null) return "";
  const a = Math.abs(skew);
  if (a < 1) return `<span id="n-clock">in step with the hub</span>`;
  const text = `${num(a, a < 10 ? 1 : 0)} s ${skew > 0 ? "ahead of" : "behind"} the hub`;
  return `<span id="n-clock"${a > 60 ? ' class="warn" title="set this node\'s clock right (NTP)"' : ""}>${text}</span>`;
}

// Where Prometheus scrapes this node (http_sd), or why the hub leaves it out.
function scrapeText() {
  const n = init.node;
  if (n.scrape_problem) return `<span id="n-scrape" class="warn">${esc(n.scrape_problem)}</span>`;
  return n.agent_url && n.source === "push" ? `<span id="n-scrape">${esc(n.agent_url)}/metrics</span>` : "";
}

function renderHost() {
  const h = snap.host || {};
  const v = snap.values || {};
  $("#n-system").innerHTML = kv([
    ["Hostname", esc(h.hostname)], ["OS", esc(`${h.os || ""} ${h.os_version || ""}`.trim())], ["Kernel", esc(h.kernel)],
    ["Architecture", esc(h.arch)], ["Booted", h.boot_time ? `${when(h.boot_time)} (up ${duration(v.uptime_seconds)})` : ""],
    ["Backend", esc(snap.backend)], ["Agent", esc(snap.agent_version)], ["Source", esc(init.node.source)],
    ["Last report", `<span data-ts="${snap.timestamp}">${when(snap.timestamp)}</span>`],
    ["Clock", clockText(status.clock_skew_seconds)], ["Scraped at", scrapeText()],
  ]);
  $("#n-cpu").innerHTML = kv([
    ["Model", esc(h.cpu_model)], ["Cores", `${num(v.cpu_cores)} logical, ${num(v.cpu_physical_cores)} physical`],
    ["Utilisation", `<span data-cpu="${v.cpu_utilization_ratio ?? ""}">${pct(v.cpu_utilization_ratio, 1)}</span>`],
    ["Frequency", hertz(v.cpu_frequency_hertz)],
    ["Load", v.load1 == null ? "" : `${num(v.load1, 2)} · ${num(v.load5, 2)} · ${num(v.load15, 2)}`],
    ["Processes", num(v.processes)],
  ]);
  $("#n-cores").innerHTML = (snap.cpus || []).map((c) => {
    const u = c.values.utilization_ratio;
    return `<i style="background:${heat(u == null ? null : u * 100)}" title="CPU ${c.cpu}: ${pct(u)}"></i>`;
  }).join("");
  const mt = v.memory_total_bytes;
  const st = v.swap_total_bytes;
  $("#n-mem").innerHTML = `<dl class="kv">${kv([
    ["Memory", `${bytes(v.memory_used_bytes)} of ${bytes(mt)} (${mt ? pct(v.memory_used_bytes / mt) : "—"})`],
    ["Available", bytes(v.memory_available_bytes)],
    ["Swap", st ? `${bytes(v.swap_used_bytes)} of ${bytes(st)} (${pct(v.swap_used_bytes / st)})` : "none"],
  ])}</dl><div style="margin:6px 0">${bar(mt ? v.memory_used_bytes / mt : 0, "mem")}</div>` +
    (st ? `<div>${bar(v.swap_used_bytes / st, "mem")}</div>` : "");
  const users = snap.users || [];
  $("#n-users").innerHTML = users.length ? `<table><thead><tr><th>User</th><th>Terminal</th><th>From</th><th>Since</th><th>PID</th></tr></thead><tbody>${
    users.map((u) => `<tr><td><a href="/users/${encodeURIComponent(u.name)}">${esc(u.name)}</a></td><td>${esc(u.terminal)}</td><td>${esc(u.host)}</td><td>${when(u.started)}</td><td>${u.pid ?? ""}</td></tr>`).join("")
  }</tbody></table>` : `<p class="muted">Nobody is logged in.</p>`;
  const dt = prev ? snap.timestamp - prev.timestamp : 0;
  const prevOf = (list, key, id) => (prev && dt > 0 ? (prev[list] || []).find((x) => x[key] === id) : null);
  const disks = snap.disks || [];
  $("#n-disks").innerHTML = disks.length ? `<table><thead><tr><th>Mount</th><th>Device</th><th>FS</th><th class="num">Used</th><th class="num">Size</th><th style="width:22%"></th><th class="num">Read</th><th class="num">Write</th></tr></thead><tbody>${
    disks.map((d) => {
      const p = prevOf("disks", "mountpoint", d.mountpoint);
      const r = p ? (d.values.read_bytes_total - p.values.read_bytes_total) / dt : null;
      const w = p ? (d.values.written_bytes_total - p.values.written_bytes_total) / dt : null;
      const size = d.values.size_bytes;
      return `<tr><td>${esc(d.mountpoint)}</td><td class="mono">${esc(d.device)}</td><td>${esc(d.fstype)}</td><td class="num">${bytes(d.values.used_bytes)}</td>` +
        `<td class="num">${bytes(size)}</td><td>${bar(size ? d.values.used_bytes / size : 0)}</td><td class="num">${rate(r)}</td><td class="num">${rate(w)}</td></tr>`;
    }).join("")}</tbody></table>` : `<p class="muted">No disks reported.</p>`;
  const nets = snap.networks || [];
  $("#n-net").innerHTML = nets.length ? `<table><thead><tr><th>Interface</th><th class="num">Receive</th><th class="num">Send</th><th class="num">Received</th><th class="num">Sent</th><th class="num">Errors</th><th class="num">Drops</th></tr></thead><tbody>${
    nets.map((n) => {
      const p = prevOf("networks", "interface", n.interface);
      const v2 = n.values;
      const rx = p ? (v2.receive_bytes_total - p.values.receive_bytes_total) / dt : null;
      const tx = p ? (v2.transmit_bytes_total - p.values.transmit_bytes_total) / dt : null;
      return `<tr><td>${esc(n.interface)}</td><td class="num">${rate(rx)}</td><td class="num">${rate(tx)}</td><td class="num">${bytes(v2.receive_bytes_total)}</td>` +
        `<td class="num">${bytes(v2.transmit_bytes_total)}</td><td class="num">${num((v2.receive_errors_total || 0) + (v2.transmit_errors_total || 0))}</td>` +
        `<td class="num">${num((v2.receive_drops_total || 0) + (v2.transmit_drops_total || 0))}</td></tr>`;
    }).join("")}</tbody></table>` : `<p class="muted">No interfaces reported.</p>`;
}

function renderGpus() {
  const gpus = snap.gpus || [];
  $("#h-acc").textContent = gpus.length ? `Accelerators (${gpus.length})` : "Accelerators: none";
  $("#n-gpus").innerHTML = gpus.map((g) => {
    const v = g.values;
    const users = [...new Set((g.processes || []).map((p) => p.user || "?"))].join(", ");
    const memR = v.memory_total_bytes ? v.memory_used_bytes / v.memory_total_bytes : null;
    const u = v.utilization_ratio;
    const h = gpuHealth(v, init.health.rules);
    const flag = h.action ? ` <span class="badge health" data-health="${h.action}" title="${esc(h.reasons.join("; "))}">${h.action === "drain" ? "drain" : "needs reset"}</span>` : "";
    return `<a class="gcard" href="/nodes/${encodeURIComponent(name)}/gpus/${g.index}" data-gpu="${g.index}" data-util="${u == null ? "" : Math.round(u * 100)}">` +
      `<div class="gh"><span>GPU ${g.index}${flag}</span><span class="gm">${esc(g.model)}</span></div>` +
      `<div class="row"><span class="muted">Util</span>${bar(u)}<span class="num">${pct(u)}</span></div>` +
      `<div class="row"><span class="muted">Memory</span>${bar(memR, "mem")}<span class="num">${bytes(v.memory_used_bytes)}</span></div>` +
      `<div class="row"><span class="muted">Temp</span>${bar(v.temperature_celsius != null ? v.temperature_celsius / 100 : 0, v.temperature_celsius >= 85 ? "hot" : "")}<span class="num">${celsius(v.temperature_celsius)}</span></div>` +
      `<div class="row"><span class="muted">Power</span>${bar(v.power_limit_watts ? v.power_watts / v.power_limit_watts : 0)}<span class="num">${watts(v.power_watts)}${v.power_limit_watts ? ` / ${watts(v.power_limit_watts)}` : ""}</span></div>` +
      `<div class="gm">${g.up === false || v.up === 0 ? '<b style="color:var(--bad)">lost</b> · ' : ""}${users ? `used by ${esc(users)}` : "free"}${(g.mig || []).length ? ` · MIG ×${g.mig.length}` : ""}${(g.events || []).length ? ` · ${esc(g.events.join(", "))}` : ""}</div></a>`;
  }).join("");
}

// ---- processes --------------------------------------------------------------------------------------
const table = $("#n-procs");
// A GPU process's container / pod / job: the host row's, else what the GPU backend reported.
const owner = (r) => r.p.owner || (r.g && r.g.p.owner) || null;
const sorter = sortable(table, () => renderProcs(), "gmem");
function renderProcs() {
  const gpuOf = new Map(); // pid -> {gpus, memory, gproc}
  for (const g of snap.gpus || []) for (const p of g.processes || []) {
    const e = gpuOf.get(p.pid) || { gpus: [], memory: 0, p };
    e.gpus.push(g.index);
    e.memory += p.memory_bytes || 0;
    gpuOf.set(p.pid, e);
  }
  const rows = (snap.processes || []).map((p) => ({ p, g: gpuOf.get(p.pid) }));
  const seen = new Set(rows.map((r) => r.p.pid));
  // GPU processes the host table lacks (another PID namespace, or the table was cut): shown too.
  for (const [pid, e] of gpuOf) if (!seen.has(pid)) rows.push({ p: { pid, user: e.p.user, command: e.p.command, owner: e.p.owner }, g: e });
  const get = (r, key) => {
    switch (key) {
      case "pid": return r.p.pid;
      case "user": return r.p.user || "";
      case "gpu": return r.g ? r.g.gpus.join(",") : (r.p.gpus || []).join(",") || null;
      case "cpu": return r.p.cpu_ratio ?? null;
      case "mem": return r.p.memory_bytes ?? null;
      case "gmem": return r.g ? r.g.memory : null;
      case "time": return r.p.cpu_seconds ?? null;
      case "owner": return ownerText(owner(r)) || null;
      default: return r.p.command || r.p.name || "";
    }
  };
  sorter.sort(rows, get);
  $("#n-pcount").textContent = `${rows.length}${gpuOf.size ? ` · ${gpuOf.size} on GPUs` : ""}`;
  table.tBodies[0].innerHTML = rows.slice(0, 500).map((r) => {
    const gpus = r.g ? r.g.gpus : r.p.gpus || [];
    return `<tr class="${gpus.length ? "gpuproc" : ""}" data-pid="${r.p.pid}"><td class="num">${r.p.pid}</td>` +
      `<td>${r.p.user ? `<a href="/users/${encodeURIComponent(r.p.user)}">${esc(r.p.user)}</a>` : ""}</td>` +
      `<td>${gpus.length ? `<span class="tag">GPU</span> ${gpus.join(", ")}` : ""}</td>` +
      `<td class="num">${r.p.cpu_ratio == null ? "—" : pct(r.p.cpu_ratio)}</td><td class="num">${bytes(r.p.memory_bytes)}</td>` +
      `<td class="num">${r.g ? bytes(r.g.memory) : ""}</td><td class="num">${r.p.cpu_seconds == null ? "" : duration(r.p.cpu_seconds)}</td>` +
      `<td>${esc(ownerText(owner(r)))}</td><td class="cmd mono" title="${esc(r.p.command)}">${esc(r.p.command || r.p.name)}</td></tr>`;
  }).join("");
}

// ---- charts -------------------------------------------------------------------------------------------
function chartSpecs() {
  const gpus = (snap && snap.gpus) || [];
  const m = [`node="${name}"`];
  const perGpu = (key, scale = 1) => gpus.map((g) => ({
    metric: init.catalogue.gpu[key].name, match: m, label: `GPU ${g.index}`, select: (l) => l.gpu === String(g.index),
    live: (s) => { const x = (s.gpus || []).find((y) => y.index === g.index); const v = x && x.values[key]; return v == null ? null : v * scale; },
  }));
  const host = [
    { id: "cpu", title: "CPU and memory used", fmt: (v) => `${Math.round(v)}%`, min: 0, max: 100, lines: [
      { metric: init.catalogue.node.cpu_utilization_ratio.name, match: m, label: "CPU", live: (s) => s.values.cpu_utilization_ratio * 100, scale: 100 },
      { metric: init.catalogue.node.memory_used_bytes.name, match: m, label: "Memory", live: (s) => (100 * s.values.memory_used_bytes) / s.values.memory_total_bytes,
        scale: 100 / (snap.values.memory_total_bytes || 1) },
    ] },
  ];
  if (!gpus.length) return host;
  return [
    { id: "util", title: "GPU utilisation", fmt: (v) => `${Math.round(v * 100)}%`, min: 0, max: 1, lines: perGpu("utilization_ratio") },
    { id: "mem", title: "GPU memory used", fmt: (v) => bytes(v), unit: "bytes", min: 0, lines: perGpu("memory_used_bytes") },
    { id: "temp", title: "GPU temperature", fmt: (v) => `${Number.isInteger(v) ? v : v.toFixed(1)} °C`, lines: perGpu("temperature_celsius") },
    { id: "power", title: "GPU power", fmt: (v) => `${Math.round(v)} W`, min: 0, lines: perGpu("power_watts") },
    ...host,
  ];
}

let charts = null;
function setupCharts() {
  const range = rangePicker($("#range"), init.ranges, (r) => charts.load(r));
  const specs = chartSpecs();
  charts = new ChartSet($("#n-charts"), specs);
  charts.load(range);
}

// ---- live -----------------------------------------------------------------------------------------------
const render = frameScheduler(() => { renderStatus(); if (snap) { renderHost(); renderGpus(); renderProcs(); } });
if (snap) setupCharts();
render();
live({ fleet: 0, node: name }, {
  node: (s) => {
    if (snap && s.timestamp <= snap.timestamp) return;
    const first = !snap;
    prev = snap;
    snap = s;
    if (first) setupCharts();
    else if (charts) charts.push(s.timestamp, s);
    render();
  },
  status: (st) => { status = { ...status, ...st }; render(); },
});
document.body.dataset.ready = "1";
