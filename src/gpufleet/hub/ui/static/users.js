// Users page: one row per user with what they hold now, live.
import { $, esc, initial, live, frameScheduler, sortable, bytes, pct, num } from "./common.js";

let rows = initial().users || [];
const table = $("#u-table");
const sorter = sortable(table, () => draw(), "gpus");
const where = (r) => {
  const shown = r.nodes.slice(0, 4).map((n) => `<a href="/nodes/${encodeURIComponent(n)}">${esc(n)}</a>`).join(", ");
  return r.nodes.length > 4 ? `${shown} +${r.nodes.length - 4}` : shown;
};
const draw = frameScheduler(() => {
  sorter.sort(rows, (r, k) => (k === "nodes" ? r.nodes.length : r[k]));
  $("#u-count").textContent = `(${rows.length})`;
  table.tBodies[0].innerHTML = rows.length ? rows.map((r) => `<tr data-user="${esc(r.user)}" data-gpus="${r.gpus}" data-gpu-memory="${r.gpu_memory}">` +
    `<td><a href="/users/${encodeURIComponent(r.user)}">${esc(r.user)}</a></td><td class="num">${r.gpus}</td>` +
    `<td class="num">${bytes(r.gpu_memory)}</td><td class="num">${pct(r.util)}</td><td class="num">${r.nodes.length}</td>` +
    `<td class="num">${num(r.processes)}</td><td class="num">${num(r.cpu, 2)}</td><td class="num">${bytes(r.memory)}</td>` +
    `<td class="num">${r.logins}</td><td>${where(r)}</td></tr>`).join("")
    : `<tr><td colspan="10" class="muted">Nobody is using the fleet right now.</td></tr>`;
});
draw();
live({ fleet: 0, users: 1 }, { users: (m) => { rows = m.users; draw(); } });
document.body.dataset.ready = "1";
