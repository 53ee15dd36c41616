// Usage page: ranking over a period by user / group / job / node, the daily trend, months,
// CSV export; ?user=NAME is one person's own view. Figures come with the page (the API's own).
import { $, esc, initial, pct, num } from "./common.js";
import { TimeChart } from "./charts.js";

const init = initial();
const by = init.by;
const rows = init.rows || [];
const NAMES = { user: "User", group: "Group", job: "Job", node: "Node" };
const hours = (h) => num(h, 2);
const kwh = (k) => num(k, 3);

const link = (over) => {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(over)) if (v == null) p.delete(k); else p.set(k, v);
  return `/usage?${p}`;
};
const keyCell = (k) => {
  if (by === "user") return `<a href="${link({ user: k, by: "node" })}">${esc(k)}</a>`;
  if (by === "job") return `<a href="/jobs/${k.split("/").map(encodeURIComponent).join("/")}">${esc(k)}</a>`;
  if (by === "node") return `<a href="/nodes/${encodeURIComponent(k)}">${esc(k)}</a>`;
  return esc(k || "(none)");
};

$("#us-title").textContent = init.user ? `Usage of ${init.user}` : "Usage";
$("#us-crumbs").innerHTML = init.user ? `<a href="${link({ user: null, by: "user" })}">Usage</a> / <a href="/users/${encodeURIComponent(init.user)}">${esc(init.user)} now</a>` : "";
const period = init.since_text;
$("#us-controls").innerHTML =
  `<span class="muted">Period</span> ` + init.periods.map((p) => `<a href="${link({ since: p, until: null })}"${p === period && !init.until_text ? ' aria-current="page"' : ""}>${p}</a>`).join(" ") +
  ` <span class="muted">· by</span> <select id="us-by" aria-label="Group by">` +
  Object.entries(NAMES).map(([k, n]) => `<option value="${k}"${k === by ? " selected" : ""}>${n}</option>`).join("") + `</select>` +
  ` <span class="muted">· ${new Date(init.since * 1000).toISOString().slice(0, 16).replace("T", " ")} to ${new Date(init.until * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC</span>`;
$("#us-by").addEventListener("change", (e) => { location.href = link({ by: e.target.value }); });

const api = (path, extra) => {
  const p = new URLSearchParams({ since: String(init.since), until: String(init.until), by, format: "csv", ...extra });
  if (init.user) p.set("user", init.user);
  return `${path}?${p}`;
};
$("#us-csv").href = api("/api/v1/usage", {});
$("#us-mcsv").href = api("/api/v1/usage/monthly", { by: "user", since: "365d" });

const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
const total = { held: sum("gpu_hours_in_use"), busy: sum("gpu_hours_busy"), kwh: sum("energy_kwh"), waste: sum("waste_gpu_hours") };
const stat = (k, v, attr = "") => `<div class="stat"${attr}><div class="k">${k}</div><div class="v">${v}</div></div>`;
$("#us-totals").innerHTML = [
  stat("GPU-hours in use", hours(total.held), ` data-total="gpu_hours_in_use" data-value="${total.held}"`),
  stat("GPU-hours busy", hours(total.busy)),
  stat("Mean utilisation", pct(total.held ? total.busy / total.held : null)),
  stat("Energy", `${kwh(total.kwh)} <small>kWh</small>`),
  stat("Waste (idle held)", `${hours(total.waste)} <small>GPU-h</small>`),
  ...(init.priced ? [stat("Cost", num(sum("cost"), 2))] : []),
].join("");

const table = $("#us-table");
const max = Math.max(1e-9, ...rows.map((r) => r.gpu_hours_in_use));
table.tHead.innerHTML = `<tr><th>${NAMES[by]}</th><th class="num">GPU-hours in use</th><th></th><th class="num">Busy GPU-h</th>` +
  `<th class="num">Mean util.</th><th class="num">kWh</th><th class="num">Waste GPU-h</th>${init.priced ? '<th class="num">Cost</th>' : ""}` +
  `${by === "job" ? "<th>User</th>" : ""}</tr>`;
$("#us-count").textContent = `(${rows.length})`;
table.tBodies[0].innerHTML = rows.length ? rows.map((r) => `<tr data-key="${esc(r[by])}" data-in-use="${r.gpu_hours_in_use}" ` +
  `data-busy="${r.gpu_hours_busy}" data-util="${r.mean_utilization}" data-kwh="${r.energy_kwh}" data-waste="${r.waste_gpu_hours}">` +
  `<td>${keyCell(r[by])}</td><td class="num">${hours(r.gpu_hours_in_use)}</td>` +
  `<td style="min-width:120px"><div class="bar"><i style="width:${(100 * r.gpu_hours_in_use / max).toFixed(1)}%"></i></div></td>` +
  `<td class="num">${hours(r.gpu_hours_busy)}</td><td class="num">${pct(r.mean_utilization)}</td><td class="num">${kwh(r.energy_kwh)}</td>` +
  `<td class="num">${hours(r.waste_gpu_hours)}</td>${init.priced ? `<td class="num">${num(r.cost, 2)}</td>` : ""}` +
  `${by === "job" ? `<td>${esc(r.user)}</td>` : ""}</tr>`).join("")
  : `<tr><td colspan="8" class="muted">No GPU was held in this period.</td></tr>`;

const tr = init.trend;
if (tr.series.length) {
  const chart = new TimeChart($("#us-trend"), { id: "trend", title: `GPU-hours in use per day, by ${init.user ? "node" : "user"}`,
    series: tr.series.map((s) => s.key), fmt: (v) => num(v, 1), min: 0 });
  chart.load(tr.series.map((s) => ({ timestamps: tr.days, values: s.gpu_hours })), init.until - tr.days[0], 86400, init.until);
} else {
  $("#us-trend").innerHTML = `<p class="muted">No whole day in this period yet.</p>`;
}

const monthRows = (list, key) => list.length ? list.map((r) => `<tr><td>${esc(r.month)}</td><td>${esc(r[key] || "(none)")}</td>` +
  `<td class="num">${hours(r.gpu_hours_in_use)}</td><td class="num">${hours(r.gpu_hours_busy)}</td><td class="num">${pct(r.mean_utilization)}</td>` +
  `<td class="num">${kwh(r.energy_kwh)}</td></tr>`).join("") : `<tr><td colspan="6" class="muted">Nothing yet.</td></tr>`;
$("#us-months").tBodies[0].innerHTML = monthRows(init.monthly, "user");
$("#us-gmonths").tBodies[0].innerHTML = monthRows(init.monthly_groups, "group");

$("#conn").dataset.state = "live";
$("#conn").textContent = "as of page load";
document.body.dataset.ready = "1";
