// GPU page: every field the agent reports for one accelerator, who is on it, and its history.
import { $, esc, initial, live, frameScheduler, gpuHealth, bytes, rate, pct, celsius, watts, hertz, when, ago, human } from "./common.js";
import { ChartSet, rangePicker } from "./charts.js";
import { ownerText } from "./owner.js";

const init = initial();
const name = init.node.name;
const index = init.gpu;
const cat = init.catalogue.gpu;
let snap = init.snapshotJson;
let status = init.node;
const gpuOf = (s) => (s && s.gpus ? s.gpus.find((g) => g.index === index) : null);

// One reading as a table row: its description, its value in the catalogue's unit, its metric name.
function readingRow(kind, k, val) {
  const meta = cat[k];
  return `<tr data-${kind}="${esc(k)}" data-value="${val}"><td title="${esc(meta ? meta.help : "")}">${esc(meta ? meta.help.replace(/\.$/, "") : k)}</td>` +
    `<td class="num">${esc(human(val, meta))}</td><td class="mono muted">${esc(meta ? meta.name : k)}</td></tr>`;
}

function render() {
  const st = $("#g-status");
  st.dataset.status = status.status;
  st.textContent = status.status;
  const b = $("#g-banner");
  b.hidden = status.status === "up";
  if (!b.hidden) b.textContent = `The node is ${status.status}; last report ${ago(status.last_seen)}.`;
  const g = gpuOf(snap);
  if (!g) return;
  const v = g.values;
  $("#g-model").textContent = `${g.model} · ${g.vendor}`;
  const stat = (k, val, attr = "", sub = "") => `<div class="stat"${attr}><div class="k">${k}</div><div class="v">${val}${sub ? ` <small>${sub}</small>` : ""}</div></div>`;
  const u = v.utilization_ratio;
  $("#g-stats").dataset.ts = snap.timestamp;
  $("#g-stats").innerHTML = [
    stat("Utilisation", pct(u), ` data-util="${u == null ? "" : Math.round(u * 100)}"`),
    stat("Memory", bytes(v.memory_used_bytes), ` data-mem="${v.memory_used_bytes ?? ""}"`, v.memory_total_bytes ? `of ${bytes(v.memory_total_bytes)}` : ""),
    stat("Temperature", celsius(v.temperature_celsius), ` data-temp="${v.temperature_celsius ?? ""}"`, v.memory_temperature_celsius != null ? `HBM ${celsius(v.memory_temperature_celsius)}` : ""),
    stat("Power", watts(v.power_watts), ` data-power="${v.power_watts ?? ""}"`, v.power_limit_watts ? `limit ${watts(v.power_limit_watts)}` : ""),
    stat("SM clock", hertz(v.sm_clock_hertz), "", v.sm_clock_max_hertz ? `max ${hertz(v.sm_clock_max_hertz)}` : ""),
    stat("PCIe", rate(v.pcie_receive_bytes_per_second), "", `in · ${rate(v.pcie_transmit_bytes_per_second)} out`),
  ].join("");
  renderHealth(g);
  const procs = g.processes || [];
  $("#g-pcount").textContent = procs.length ? `(${procs.length})` : "";
  $("#g-procs").tBodies[0].innerHTML = procs.length ? procs.map((p) => `<tr data-pid="${p.pid}"><td class="num">${p.pid}</td>` +
    `<td>${p.user ? `<a href="/users/${encodeURIComponent(p.user)}">${esc(p.user)}</a>` : "?"}</td><td>${esc(ownerText(p.owner))}</td>` +
    `<td>${esc(p.kind || "compute")}</td><td>${p.gpu_instance ?? ""}</td><td class="num">${p.memory_bytes == null ? "—" : bytes(p.memory_bytes)}</td>` +
    `<td class="cmd mono" title="${esc(p.command)}">${esc(p.command)}</td></tr>`).join("")
    : `<tr><td colspan="7" class="muted">No process is using this GPU: it is free.</td></tr>`;
  const mig = g.mig || [];
  $("#g-mig").innerHTML = mig.length ? `<h2>MIG instances</h2><div class="panel"><table><thead><tr><th>GPU instance</th><th>Compute instance</th><th>Profile</th><th class="num">Memory used</th><th class="num">Memory</th><th class="num">Engine active</th><th>UUID</th></tr></thead><tbody>${
    mig.map((m) => `<tr><td>${m.gpu_instance}</td><td>${m.compute_instance ?? 0}</td><td>${esc(m.profile)}</td><td class="num">${bytes(m.values.memory_used_bytes)}</td>` +
      `<td class="num">${bytes(m.values.memory_total_bytes)}</td><td class="num">${pct(m.values.graphics_engine_active_ratio)}</td><td class="mono">${esc(m.uuid)}</td></tr>`).join("")
  }</tbody></table></div>` : "";
  // Every value the agent sent, in catalogue order, then any the catalogue does not know.
  const keys = [...Object.keys(cat).filter((k) => k in v), ...Object.keys(v).filter((k) => !(k in cat))];
  $("#g-fields").tBodies[0].innerHTML = keys.map((k) => readingRow("field", k, v[k])).join("");
  const info = g.info || {};
  $("#g-info").innerHTML = [["UUID", g.uuid], ["Model", g.model], ["Vendor", g.vendor], ...Object.entries(info),
    ["Throttle reasons", (g.throttle_reasons || []).join(", ") || "none"], ["Recent events", (g.events || []).join(", ") || "none"],
    ["Last report", when(snap.timestamp)]]
    .map(([k, val]) => `<dt>${esc(k.replace(/_/g, " "))}</dt><dd>${esc(val)}</dd>`).join("");
}

// Whether the GPU needs a reset or a drain (gpufleet.health's rules), its health counters and
// its NVLink (XGMI) links; a reading the device does not report is left out, never shown as 0.
function renderHealth(g) {
  const v = g.values;
  const h = gpuHealth(v, init.health.rules);
  const hb = $("#g-health");
  hb.hidden = !h.action;
  hb.dataset.health = h.action || "";
  if (h.action) hb.textContent = `${h.action === "drain" ? "Drain this GPU and have it serviced" : "Drain this GPU's jobs, then reset it"}: ${h.reasons.join("; ")}.`;
  const keys = init.health.counters.filter((k) => v[k] != null);
  $("#g-counters").tBodies[0].innerHTML = keys.length ? keys.map((k) => readingRow("counter", k, v[k])).join("")
    : `<tr><td colspan="3" class="muted">This device reports no health counters.</td></tr>`;
  const links = g.links || [];
  const lc = init.catalogue.gpu_link;
  $("#g-lcount").textContent = links.length ? `(${links.filter((l) => l.values.up === 1).length} of ${links.length} up)` : "";
  const errs = (lv) => ["crc_flit_errors_total", "crc_data_errors_total", "replay_errors_total", "recovery_errors_total"]
    .reduce((n, k) => (lv[k] == null ? n : (n ?? 0) + lv[k]), null);
  $("#g-links").innerHTML = links.length ? `<table id="g-linktable"><thead><tr><th>Link</th><th>State</th><th class="num">Speed</th>` +
    `<th class="num">Busy</th><th class="num">Sent</th><th class="num">Received</th><th class="num" title="CRC, replay and recovery errors">Errors</th></tr></thead><tbody>${
    links.map((l) => { const lv = l.values; return `<tr data-link="${l.link}"><td>${l.link}</td>` +
      `<td>${lv.up == null ? "—" : lv.up === 1 ? "up" : '<span class="warn">down</span>'}</td>` +
      `<td class="num">${rate(lv.speed_bytes_per_second)}</td><td class="num">${esc(human(lv.utilization_ratio, lc.utilization_ratio))}</td>` +
      `<td class="num">${bytes(lv.transmit_bytes_total)}</td><td class="num">${bytes(lv.receive_bytes_total)}</td>` +
      `<td class="num" data-errors="${errs(lv) ?? ""}">${errs(lv) ?? "—"}</td></tr>`; }).join("")}</tbody></table>`
    : `<p class="muted">This GPU reports no NVLink or XGMI links.</p>`;
}

function specs() {
  const m = [`node="${name}"`, `gpu="${index}"`];
  const line = (key, label, scale) => ({ metric: cat[key].name, match: m, label, scale,
    live: (s) => { const g = gpuOf(s); const x = g && g.values[key]; return x == null ? null : x * (scale || 1); } });
  return [
    { id: "util", title: "Utilisation", fmt: (v) => `${Math.round(v)}%`, min: 0, max: 100, lines: [
      line("utilization_ratio", "GPU", 100),
      line("memory_bandwidth_utilization_ratio", "Memory bandwidth", 100),
      line("sm_active_ratio", "SM active", 100),
      line("tensor_active_ratio", "Tensor active", 100)] },
    { id: "mem", title: "Memory", fmt: (v) => bytes(v), unit: "bytes", min: 0, lines: [
      line("memory_used_bytes", "Used"),
      line("memory_total_bytes", "Total")] },
    { id: "temp", title: "Temperature", fmt: (v) => `${Number.isInteger(v) ? v : v.toFixed(1)} °C`, lines: [
      line("temperature_celsius", "Die"),
      line("memory_temperature_celsius", "Memory")] },
    { id: "power", title: "Power", fmt: (v) => `${Math.round(v)} W`, min: 0, lines: [
      line("power_watts", "Draw"),
      line("power_limit_watts", "Limit")] },
    { id: "clocks", title: "Clocks", fmt: (v) => hertz(v), min: 0, lines: [
      line("sm_clock_hertz", "SM"),
      line("memory_clock_hertz", "Memory")] },
    { id: "pcie", title: "PCIe throughput", fmt: (v) => rate(v), min: 0, lines: [
      line("pcie_receive_bytes_per_second", "Into device"),
      line("pcie_transmit_bytes_per_second", "Out of device")] },
  ];
}

const charts = new ChartSet($("#g-charts"), specs());
charts.load(rangePicker($("#range"), init.ranges, (r) => charts.load(r)));
const draw = frameScheduler(render);
draw();
live({ fleet: 0, node: name }, {
  node: (s) => {
    if (snap && s.timestamp <= snap.timestamp) return;
    snap = s;
    charts.push(s.timestamp, s);
    draw();
  },
  status: (st) => { status = { ...status, ...st }; draw(); },
});
document.body.dataset.ready = "1";
