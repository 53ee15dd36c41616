// One job across its nodes: verdict, figures per GPU, and utilisation and memory over its life.
import { $, esc, initial, pct, num, bytes } from "./common.js";
import { TimeChart } from "./charts.js";

const init = initial();
const j = init.job;
const utc = (t) => (t == null ? "" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " "));
const KIND = { slurm: "Slurm job", pod: "Pod", container: "Container" };
$("#job-title").textContent = `${KIND[j.kind] || "Job"} ${j.id}`;
$("#job-state").textContent = j.running ? "running" : "ended";
$("#job-verdict").textContent = j.verdict;
const stat = (k, v, attr = "") => `<div class="stat"${attr}><div class="k">${k}</div><div class="v">${v}</div></div>`;
$("#job-totals").innerHTML = [
  stat("User", `<a href="/usage?user=${encodeURIComponent(j.user)}&by=job">${esc(j.user)}</a>`),
  stat("Nodes", j.nodes.map((n) => `<a href="/nodes/${encodeURIComponent(n)}">${esc(n)}</a>`).join(", ")),
  stat("Start (UTC)", utc(j.start)), stat("End (UTC)", j.running ? "running" : utc(j.end)),
  stat("GPU-hours", num(j.gpu_hours_in_use, 2), ` data-value="${j.gpu_hours_in_use}" data-total="gpu_hours_in_use"`),
  stat("Busy GPU-hours", num(j.gpu_hours_busy, 2)), stat("Mean utilisation", pct(j.mean_utilization)),
  stat("Energy", `${num(j.energy_kwh, 3)} <small>kWh</small>`, ` data-value="${j.energy_kwh}" data-total="energy_kwh"`),
  stat("Waste", `${num(j.waste_gpu_hours, 2)} <small>GPU-h</small>`),
  ...(j.cost != null ? [stat("Cost", num(j.cost, 2))] : []),
].join("");
$("#job-gpus").tBodies[0].innerHTML = j.gpus.map((g) => `<tr data-node="${esc(g.node)}" data-gpu="${g.gpu}" data-in-use="${g.gpu_hours_in_use}" data-util="${g.mean_utilization}">` +
  `<td><a href="/nodes/${encodeURIComponent(g.node)}">${esc(g.node)}</a></td><td><a href="/nodes/${encodeURIComponent(g.node)}/gpus/${g.gpu}">GPU ${g.gpu}</a>${(g.slices || []).length ? ` / MIG ${g.slices.join(", ")}` : ""}</td>` +
  `<td class="mono">${esc(g.uuid)}</td><td>${utc(g.start)}</td><td>${g.running ? "running" : utc(g.end)}</td>` +
  `<td class="num">${num(g.gpu_hours_in_use, 2)}</td><td class="num">${num(g.gpu_hours_busy, 2)}</td><td class="num">${pct(g.mean_utilization)}</td>` +
  `<td class="num">${num(g.energy_kwh, 3)}</td><td class="num">${num(g.waste_gpu_hours, 2)}</td></tr>`).join("");

// Charts over the job's life (a little either side). Utilisation and memory: one line per slot
// held, from the job's API answer (a MIG slice's line is the slice's own readings: NVML gives no
// whole-GPU utilisation with MIG on). Power: one line per GPU (slices share their GPU's), from the store.
const shown = j.gpus.slice(0, 16);
const end = (j.running ? init.t : j.end) + 60;
const start = j.start - 60;
const points = 600;
const step = Math.max(1, (end - start) / points);
async function series(metric) {
  return Promise.all(shown.map(async (g) => {
    const q = new URLSearchParams({ metric, start: String(start), end: String(end), step: String(step), agg: "avg" });
    q.append("match", `node="${g.node}"`);
    q.append("match", `gpu="${g.gpu}"`);
    const r = await fetch(`/api/v1/query_range?${q}`);
    if (!r.ok) return null;
    const body = await r.json();
    return body.series[0] || null;
  }));
}
async function slots() {
  const r = await fetch(`/api/v1/jobs/${encodeURIComponent(j.job)}?points=${points}`);
  if (!r.ok) return null;
  const s = (await r.json()).series;
  return s && s.slots ? s : null;
}
const holder = $("#job-charts");
const power = new TimeChart(holder, { id: "power", title: "Power", series: shown.map((g) => `${g.node} GPU ${g.gpu}`), fmt: (v) => `${num(v, 0)} W`, min: 0 });
const M = init.metrics; // names from the catalogue
Promise.all([slots(), series(M.power_watts)])
  .then(([s, p]) => {
    const lines = s ? s.slots.slice(0, 16) : [];
    const labels = lines.map((l) => l.label);
    const span = s ? s.end - s.start : end - start;
    const util = new TimeChart(holder, { id: "util", title: "GPU utilisation", series: labels, fmt: (v) => pct(v), min: 0, max: 1 });
    const mem = new TimeChart(holder, { id: "mem", title: "GPU memory used", series: labels, fmt: (v) => bytes(v), unit: "bytes", min: 0 });
    holder.append(power.el); // power below utilisation and memory, as before
    util.load(lines.map((l) => l.utilization), span, s ? s.step : step, s ? s.end : end);
    mem.load(lines.map((l) => l.memory_used_bytes), span, s ? s.step : step, s ? s.end : end);
    power.load(p, end - start, step, end);
  })
  .finally(() => { document.body.dataset.ready = "1"; });
$("#conn").dataset.state = "live";
$("#conn").textContent = "as of page load";
