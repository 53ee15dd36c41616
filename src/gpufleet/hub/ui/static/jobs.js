// Jobs page: every job seen (Slurm job, pod, container) with its figures; filters in the URL.
import { $, esc, initial, pct, num } from "./common.js";

const init = initial();
const rows = init.jobs || [];
const utc = (t) => (t == null ? "" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " "));
const link = (over) => {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(over)) if (v == null) p.delete(k); else p.set(k, v);
  return `/jobs?${p}`;
};
$("#j-controls").innerHTML = `<span class="muted">Since</span> ` +
  init.periods.map((p) => `<a href="${link({ since: p })}"${p === init.since_text ? ' aria-current="page"' : ""}>${p}</a>`).join(" ") +
  ` · <a href="${link({ running: init.running ? null : "true" })}">${init.running ? "all jobs" : "running only"}</a>` +
  (init.user ? ` · user ${esc(init.user)} <a href="${link({ user: null })}">(everyone)</a>` : "");
$("#j-count").textContent = `(${rows.length})`;
$("#j-table").tBodies[0].innerHTML = rows.length ? rows.map((j) => `<tr data-job="${esc(j.job)}" data-in-use="${j.gpu_hours_in_use}">` +
  `<td><a href="/jobs/${j.job.split("/").map(encodeURIComponent).join("/")}">${esc(j.job)}</a></td>` +
  `<td><a href="${link({ user: j.user })}">${esc(j.user)}</a></td><td>${j.nodes.map(esc).join(", ")}</td><td class="num">${j.gpus}</td>` +
  `<td>${utc(j.start)}</td><td>${j.running ? '<span class="badge">running</span>' : utc(j.end)}</td>` +
  `<td class="num">${num(j.gpu_hours_in_use, 2)}</td><td class="num">${pct(j.mean_utilization)}</td><td class="num">${num(j.energy_kwh, 3)}</td>` +
  `<td class="num">${num(j.waste_gpu_hours, 2)}</td></tr>`).join("")
  : `<tr><td colspan="10" class="muted">No job${init.running ? " is running" : " was seen in this period"}.</td></tr>`;
$("#conn").dataset.state = "live";
$("#conn").textContent = "as of page load";
document.body.dataset.ready = "1";
