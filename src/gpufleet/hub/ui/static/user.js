// One user's page (DS01 "My Usage"): what they hold now and their history, with a user selector.
import { $, esc, initial, live, frameScheduler, bytes, pct, num } from "./common.js";
import { ChartSet, rangePicker } from "./charts.js";

const init = initial();
const user = init.user;
let summary = init.summary;
let rows = init.placements || [];

const sel = $("#u-select");
sel.innerHTML = init.users.map((u) => `<option${u === user ? " selected" : ""}>${esc(u)}</option>`).join("");
sel.addEventListener("change", () => { location.href = `/users/${encodeURIComponent(sel.value)}${location.search}`; });

const draw = frameScheduler(() => {
  const s = summary || { gpus: 0, gpu_memory: 0, util: null, nodes: [], processes: 0, cpu: 0, memory: 0 };
  const stat = (k, v, attr = "") => `<div class="stat"${attr}><div class="k">${k}</div><div class="v">${v}</div></div>`;
  $("#u-stats").innerHTML = [
    stat("GPUs in use", s.gpus, ` data-gpus="${s.gpus}"`), stat("GPU memory", bytes(s.gpu_memory)),
    stat("Mean GPU utilisation", pct(s.util)), stat("Nodes", s.nodes.length), stat("Processes", num(s.processes)),
    stat("CPU", `${num(s.cpu, 2)} <small>cores</small>`), stat("Memory", bytes(s.memory)),
  ].join("");
  $("#u-pcount").textContent = rows.length ? `(${rows.length} processes)` : "";
  $("#u-place").tBodies[0].innerHTML = rows.length ? rows.map((r) => `<tr data-node="${esc(r.node)}" data-gpu="${r.gpu}">` +
    `<td><a href="/nodes/${encodeURIComponent(r.node)}">${esc(r.node)}</a></td>` +
    `<td><a href="/nodes/${encodeURIComponent(r.node)}/gpus/${r.gpu}">GPU ${r.gpu}</a>${r.mig != null ? ` · MIG ${r.mig}` : ""}</td>` +
    `<td>${esc(r.model)}</td><td class="num">${r.pid}</td><td class="num">${bytes(r.memory)}</td><td class="num">${pct(r.util)}</td>` +
    `<td>${esc(r.owner)}</td><td class="cmd mono" title="${esc(r.command)}">${esc(r.command)}</td></tr>`).join("")
    : `<tr><td colspan="8" class="muted">${esc(user)} has no process on any GPU right now.</td></tr>`;
});

// Per-user series are stored per node (label user): summed over nodes here.
const m = [`user="${user}"`];
const line = (key, label, live) => ({ metric: init.catalogue.user[key].name, match: m, label, live });
const charts = new ChartSet($("#u-charts"), [
  { id: "gpus", title: "GPUs in use", fmt: (v) => num(v, 1), min: 0, lines: [line("gpus_in_use", "GPUs", (s) => s.gpus)] },
  { id: "gmem", title: "GPU memory used", fmt: (v) => bytes(v), unit: "bytes", min: 0, lines: [line("gpu_memory_used_bytes", "GPU memory", (s) => s.gpu_memory)] },
  { id: "cpu", title: "CPU used (cores)", fmt: (v) => num(v, 2), min: 0, lines: [line("cpu_utilization_ratio", "CPU", (s) => s.cpu)] },
  { id: "mem", title: "Memory used", fmt: (v) => bytes(v), unit: "bytes", min: 0, lines: [line("memory_used_bytes", "Memory", (s) => s.memory)] },
]);
charts.load(rangePicker($("#range"), init.ranges, (r) => charts.load(r)));
draw();
live({ fleet: 0, user }, {
  user: (msg) => {
    summary = msg.summary;
    rows = msg.placements;
    if (summary) charts.push(msg.t, summary);
    draw();
  },
});
document.body.dataset.ready = "1";
