// Fleet overview: totals, filters, node cards or a heatmap, patched in place by live deltas.
import { $, $$, esc, initial, live, frameScheduler, bytes, watts, ipct, heat, ago } from "./common.js";

const IDLE_UTIL = 5; // % below which a GPU counts as idle (held) or free (no process)
const HOT_C = 85;
const init = initial();
const nodes = new Map(Object.entries(init.full || {})); // name -> flat summary (see summary.py)
const els = new Map(); // name -> cached element references of its card/tile
const dirty = new Set();
const visible = new Set();
let layoutDirty = false;
let lastLayout = 0;

// ---- model -------------------------------------------------------------------------------------

function gpus(s) {
  const out = [];
  for (let i = 0; i < (s.n || 0); i++) {
    const g = s[`g${i}`];
    if (!g) continue;
    const [util, mem, temp, power, nproc] = g;
    // moved: pushing to another hub, which counts its GPUs; here they are neither lost nor in use
    const away = s.st === "moved";
    const down = !away && (s.st === "down" || s[`gd${i}`] === 1);
    const state = away ? "away" : down ? "lost" : util >= IDLE_UTIL ? "busy" : nproc > 0 ? "idle" : "free";
    out.push({ i, util, mem, total: s[`gm${i}`], temp, power, nproc, users: s[`gu${i}`] || "", down, away, state });
  }
  return out;
}

function apply(msg) {
  if (msg.full) {
    nodes.clear();
    for (const [k, v] of Object.entries(msg.full)) nodes.set(k, v);
    for (const k of nodes.keys()) dirty.add(k);
    layoutDirty = true;
  }
  for (const [name, d] of Object.entries(msg.d || {})) {
    let s = nodes.get(name);
    const known = Boolean(s);
    if (!s) { s = {}; nodes.set(name, s); layoutDirty = true; }
    const oldN = s.n;
    for (const [k, v] of Object.entries(d)) { if (v === null) delete s[k]; else s[k] = v; }
    if (known && s.n !== oldN) rebuildCard(name);
    // A node that now passes (or fails) the filters moves in (or out) at the next layout.
    if (known && filtersActive() && matches(name, s) !== els.has(name)) layoutDirty = true;
    dirty.add(name);
  }
  for (const name of msg.x || []) { nodes.delete(name); layoutDirty = true; }
  schedule();
}

// ---- controls (state kept in the URL, so a filtered view is a shareable link) -----------------------

const ctl = {
  q: $("#q"), status: $("#f-status"), label: $("#f-label"), free: $("#f-free"), sort: $("#f-sort"), group: $("#f-group"),
};
let view = "cards";

function readUrl() {
  const p = new URL(location.href).searchParams;
  ctl.q.value = p.get("q") || "";
  ctl.status.value = p.get("status") || "";
  ctl.free.checked = p.get("free") === "1";
  ctl.sort.value = p.get("sort") || "name";
  view = p.get("view") || localStorage.getItem("gpufleet-view") || (nodes.size > 300 ? "heatmap" : "cards");
  return p;
}
function writeUrl() {
  const u = new URL(location.href);
  const set = (k, v) => (v ? u.searchParams.set(k, v) : u.searchParams.delete(k));
  set("q", ctl.q.value.trim());
  set("status", ctl.status.value);
  set("label", ctl.label.value);
  set("free", ctl.free.checked ? "1" : "");
  set("sort", ctl.sort.value === "name" ? "" : ctl.sort.value);
  set("group", ctl.group.value === "cluster" ? "" : ctl.group.value);
  set("view", view);
  history.replaceState(null, "", u);
}
function filtersActive() {
  return Boolean(ctl.status.value || ctl.free.checked || ctl.q.value.trim());
}

function fillLabelOptions(p) {
  const pairs = new Set();
  const keys = new Set();
  for (const s of nodes.values()) for (const [k, v] of Object.entries(s.l || {})) { pairs.add(`${k}=${v}`); keys.add(k); }
  const want = p ? p.get("label") || "" : ctl.label.value;
  ctl.label.innerHTML = `<option value="">any label</option>` +
    Array.from(pairs).sort().map((x) => `<option>${esc(x)}</option>`).join("");
  ctl.label.value = pairs.has(want) ? want : "";
  const g = p ? p.get("group") || "cluster" : ctl.group.value;
  ctl.group.innerHTML = `<option value="">no grouping</option><option value="status">status</option>` +
    Array.from(keys).sort().map((k) => `<option value="${esc(k)}">${esc(k)}</option>`).join("");
  ctl.group.value = keys.has(g) || g === "status" ? g : "";
}

function matches(name, s) {
  if (ctl.status.value && s.st !== ctl.status.value) return false;
  if (ctl.label.value) {
    const [k, v] = ctl.label.value.split(/=(.*)/);
    if ((s.l || {})[k] !== v) return false;
  }
  const gs = gpus(s);
  if (ctl.free.checked && !gs.some((g) => g.state === "free")) return false;
  const q = ctl.q.value.trim().toLowerCase();
  if (q) {
    const hay = [name, s.md || "", ...Object.entries(s.l || {}).map(([k, v]) => `${k}=${v}`), ...gs.map((g) => g.users)]
      .join(" ").toLowerCase();
    if (!q.split(/\s+/).every((w) => hay.includes(w))) return false;
  }
  return true;
}

const STATUS_ORDER = { down: 0, stale: 1, moved: 2, up: 3 };
function sortKey(name, s) {
  const gs = gpus(s);
  switch (ctl.sort.value) {
    case "util": return -(gs.reduce((a, g) => a + (g.util || 0), 0) / (gs.length || 1));
    case "free": return -gs.filter((g) => g.state === "free").length;
    case "power": return -gs.reduce((a, g) => a + (g.power || 0), 0);
    case "status": return STATUS_ORDER[s.st] ?? 4;
    default: return 0;
  }
}

// ---- rendering -------------------------------------------------------------------------------------

function gpuRow(name, g) {
  const mem = g.total ? `${(g.mem / 1024).toFixed(0)}/${(g.total / 1024).toFixed(0)} GiB` : bytes((g.mem ?? 0) * 1048576);
  const memPct = g.total ? Math.round((g.mem / g.total) * 100) : 0;
  return `<a class="gpu" href="/nodes/${encodeURIComponent(name)}/gpus/${g.i}" data-gpu="${g.i}" data-util="${g.util ?? ""}"` +
    ` data-mem="${g.mem ?? ""}" data-temp="${g.temp ?? ""}" data-power="${g.power ?? ""}" data-state="${g.state}"` +
    ` data-free="${g.state === "free" ? 1 : 0}" data-down="${g.down ? 1 : 0}"` +
    ` aria-label="GPU ${g.i}: ${g.util ?? "no"} percent busy">` +
    `<span class="gl">GPU ${g.i}</span>` +
    `<span class="bars"><span class="bar"><i style="width:${g.util ?? 0}%"></i></span>` +
    `<span class="bar mem"><i style="width:${memPct}%"></i></span></span>` +
    `<span class="r u">${ipct(g.util)}</span><span class="r m">${mem}</span>` +
    `<span class="r t${g.temp >= HOT_C ? " t-hot" : ""}">${g.temp == null ? "—" : `${g.temp}°C`}</span>` +
    `<span class="r p">${watts(g.power)}</span><span class="users" title="${esc(g.users)}">${esc(g.users)}</span></a>`;
}

function cardHTML(name, s) {
  const gs = gpus(s);
  const labels = Object.entries(s.l || {}).filter(([k]) => k !== "simulated")
    .map(([k, v]) => `<span class="chip">${esc(k)}=${esc(v)}</span>`).join("") +
    (s.sp ? `<span class="chip chip-warn" data-scrape="no" title="${esc(s.sp)}">not in Prometheus discovery</span>` : "");
  const model = s.n ? `${s.n}× ${esc(s.md || "")}` : "no accelerator";
  return `<article class="card" data-node="${esc(name)}" data-status="${s.st}" data-ts="${s.ts ?? ""}">` +
    `<div class="hd"><a class="name" href="/nodes/${encodeURIComponent(name)}">${esc(name)}</a>` +
    `<span class="st" data-status="${s.st}">${s.st}</span><span class="model" title="${model}">${model}</span></div>` +
    `<div class="chips">${labels}</div>` +
    `<div class="hostbars"><div class="hb" data-cpu="${s.c ?? ""}"><span class="lbl">CPU</span><span class="bar"><i style="width:${s.c ?? 0}%"></i></span><span class="r">${ipct(s.c)}</span></div>` +
    `<div class="hb" data-memp="${s.m ?? ""}" title="of ${bytes(s.mt)}"><span class="lbl">MEM</span><span class="bar mem"><i style="width:${s.m ?? 0}%"></i></span><span class="r">${ipct(s.m)}</span></div></div>` +
    (gs.length ? gs.map((g) => gpuRow(name, g)).join("") : `<div class="nogpu">CPU-only node</div>`) +
    `</article>`;
}

function tileHTML(name, s) {
  const cells = gpus(s).map((g) => `<i data-gpu="${g.i}" data-util="${g.util ?? ""}" data-free="${g.state === "free" ? 1 : 0}"` +
    ` style="background:${g.down ? "var(--bad)" : g.away ? "var(--line)" : heat(g.util)}" title="${esc(tileTitle(name, g))}"></i>`).join("");
  return `<a class="tile" href="/nodes/${encodeURIComponent(name)}" data-node="${esc(name)}" data-status="${s.st}"` +
    ` data-ts="${s.ts ?? ""}" title="${esc(name)} — ${s.st}"><span class="tn">${esc(name)}</span>` +
    `<span class="cells">${cells || '<span class="muted">cpu</span>'}</span></a>`;
}
const tileTitle = (name, g) =>
  `${name} GPU ${g.i}: ${ipct(g.util)} · ${g.mem != null ? (g.mem / 1024).toFixed(1) : "—"} GiB · ${g.temp ?? "—"}°C · ${watts(g.power)}${g.users ? ` · ${g.users}` : ""}`;

function groupOf(s) {
  const key = ctl.group.value;
  if (!key) return "All nodes";
  if (key === "status") return s.st;
  return (s.l || {})[key] ?? `(no ${key})`;
}

const closedGroups = new Set(JSON.parse(localStorage.getItem("gpufleet-closed") || "[]"));
let io = null;

function layout() {
  layoutDirty = false;
  lastLayout = performance.now();
  const list = [];
  for (const [name, s] of nodes) if (matches(name, s)) list.push([name, s]);
  list.sort((a, b) => sortKey(...a) - sortKey(...b) || a[0].localeCompare(b[0], undefined, { numeric: true }));
  const groups = new Map();
  for (const item of list) {
    const g = groupOf(item[1]);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(item);
  }
  const render = view === "heatmap" ? tileHTML : cardHTML;
  const parts = [];
  for (const [g, items] of [...groups].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }))) {
    parts.push(`<details class="group" data-group="${esc(g)}"${closedGroups.has(g) ? "" : " open"}>` +
      `<summary><span>${esc(g)}</span><span class="gstats"></span></summary>` +
      `<div class="${view === "heatmap" ? "heat" : "grid"}">${items.map(([n, s]) => render(n, s)).join("")}</div></details>`);
  }
  const root = $("#fleet");
  root.innerHTML = parts.join("") || `<p class="muted">No node matches these filters.</p>`;
  $("#count").textContent = `${list.length} of ${nodes.size} nodes`;
  $("#legend").hidden = view !== "heatmap";
  els.clear();
  visible.clear();
  if (io) io.disconnect();
  io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.node;
      if (e.isIntersecting) { visible.add(name); if (dirty.has(name)) schedule(); } else visible.delete(name);
    }
  }, { rootMargin: "300px" });
  for (const el of $$("[data-node]", root)) {
    els.set(el.dataset.node, { el });
    io.observe(el);
  }
  for (const d of $$("details.group", root)) {
    d.addEventListener("toggle", () => {
      if (d.open) closedGroups.delete(d.dataset.group); else closedGroups.add(d.dataset.group);
      localStorage.setItem("gpufleet-closed", JSON.stringify([...closedGroups]));
    });
  }
  for (const n of nodes.keys()) dirty.delete(n); // just rendered from current state
  totals();
}

function rebuildCard(name) {
  const ref = els.get(name);
  if (!ref) return;
  const s = nodes.get(name);
  const tmp = document.createElement("div");
  tmp.innerHTML = view === "heatmap" ? tileHTML(name, s) : cardHTML(name, s);
  const el = tmp.firstChild;
  ref.el.replaceWith(el);
  if (io) { io.unobserve(ref.el); io.observe(el); }
  els.set(name, { el });
}

// Patch one card/tile in place: attribute and text writes only, no re-layout of the grid.
function patch(name) {
  const ref = els.get(name);
  const s = nodes.get(name);
  if (!ref || !s) return;
  const el = ref.el;
  el.dataset.status = s.st;
  el.dataset.ts = s.ts ?? "";
  if (view === "heatmap") {
    if (!ref.cells) ref.cells = $$("i[data-gpu]", el);
    const gs = gpus(s);
    ref.cells.forEach((c, k) => {
      const g = gs[k];
      if (!g) return;
      c.dataset.util = g.util ?? "";
      c.dataset.free = g.state === "free" ? 1 : 0;
      c.style.background = g.down ? "var(--bad)" : g.away ? "var(--line)" : heat(g.util);
      c.title = tileTitle(name, g);
    });
    return;
  }
  if (!ref.rows) {
    ref.rows = $$(".gpu", el).map((r) => ({ r, bars: $$(".bar > i", r), u: $(".u", r), m: $(".m", r), t: $(".t", r), p: $(".p", r), users: $(".users", r) }));
    ref.st = $(".st", el);
    ref.hb = $$(".hb", el).map((h) => ({ h, i: $(".bar > i", h), r: $(".r", h) }));
  }
  ref.st.dataset.status = s.st;
  ref.st.textContent = s.st;
  const [cpu, mem] = ref.hb;
  cpu.h.dataset.cpu = s.c ?? "";
  cpu.i.style.width = `${s.c ?? 0}%`;
  cpu.r.textContent = ipct(s.c);
  mem.h.dataset.memp = s.m ?? "";
  mem.i.style.width = `${s.m ?? 0}%`;
  mem.r.textContent = ipct(s.m);
  const gs = gpus(s);
  ref.rows.forEach((row, k) => {
    const g = gs[k];
    if (!g) return;
    const d = row.r.dataset;
    d.util = g.util ?? ""; d.mem = g.mem ?? ""; d.temp = g.temp ?? ""; d.power = g.power ?? "";
    d.state = g.state; d.free = g.state === "free" ? 1 : 0; d.down = g.down ? 1 : 0;
    row.bars[0].style.width = `${g.util ?? 0}%`;
    row.bars[1].style.width = `${g.total ? Math.round((g.mem / g.total) * 100) : 0}%`;
    row.u.textContent = ipct(g.util);
    row.m.textContent = g.total ? `${(g.mem / 1024).toFixed(0)}/${(g.total / 1024).toFixed(0)} GiB` : bytes((g.mem ?? 0) * 1048576);
    row.t.textContent = g.temp == null ? "—" : `${g.temp}°C`;
    row.t.classList.toggle("t-hot", g.temp >= HOT_C);
    row.p.textContent = watts(g.power);
    if (row.users.textContent !== g.users) { row.users.textContent = g.users; row.users.title = g.users; }
  });
}

// ---- totals ---------------------------------------------------------------------------------------

let alertsFiring = null;
function totals() {
  const t = { up: 0, stale: 0, down: 0, moved: 0, away: 0, busy: 0, idle: 0, free: 0, lost: 0, power: 0, util: 0, n: 0 };
  const perGroup = new Map();
  for (const [, s] of nodes) {
    t[s.st] = (t[s.st] || 0) + 1;
    const key = groupOf(s);
    const gt = perGroup.get(key) || { nodes: 0, busy: 0, free: 0, gpus: 0, util: 0, down: 0 };
    gt.nodes++;
    if (s.st === "down") gt.down++;
    for (const g of gpus(s)) {
      t[g.state]++;
      gt.gpus++;
      if (g.state === "busy") gt.busy++;
      if (g.state === "free") gt.free++;
      if (!g.down && !g.away) { t.power += g.power || 0; t.util += g.util || 0; t.n++; gt.util += g.util || 0; }
    }
    perGroup.set(key, gt);
  }
  const set = (id, v) => { const e = document.getElementById(id); if (e && e.textContent !== String(v)) e.textContent = v; };
  set("t-nodes", `${t.up}`);
  set("t-nodes-of", `of ${nodes.size}${t.stale ? ` · ${t.stale} stale` : ""}${t.down ? ` · ${t.down} down` : ""}${t.moved ? ` · ${t.moved} moved to another hub` : ""}`);
  set("t-busy", t.busy); set("t-idle", t.idle); set("t-free", t.free);
  set("t-lost", t.lost ? `${t.lost} lost` : "");
  set("t-util", t.n ? `${Math.round(t.util / t.n)}%` : "—");
  set("t-power", watts(t.power));
  set("t-alerts", alertsFiring == null ? "—" : alertsFiring);
  $("#t-busy").closest(".stat").dataset.value = t.busy;
  $("#t-free").closest(".stat").dataset.value = t.free;
  $("#t-idle").closest(".stat").dataset.value = t.idle;
  for (const d of $$("details.group")) {
    const gt = perGroup.get(d.dataset.group);
    if (!gt) continue;
    const txt = `${gt.nodes} nodes${gt.down ? ` (${gt.down} down)` : ""} · ${gt.gpus} GPUs · ${gt.busy} busy · ${gt.free} free` +
      (gt.gpus ? ` · avg ${Math.round(gt.util / gt.gpus)}%` : "");
    const span = d.querySelector(".gstats");
    if (span.textContent !== txt) span.textContent = txt;
  }
}

// ---- frame loop --------------------------------------------------------------------------------------

const schedule = frameScheduler(() => {
  // Re-laying out all cards is the costly step: do it at most every 2 s, when membership changed.
  if (layoutDirty && performance.now() - lastLayout > 2000) layout();
  else if (layoutDirty) setTimeout(schedule, 2100 - (performance.now() - lastLayout));
  for (const name of dirty) {
    if (!visible.has(name)) continue; // off screen or in a closed group: patched when it scrolls into view
    patch(name);
    dirty.delete(name);
  }
  totals();
});

async function pollAlerts() {
  if (document.body.dataset.alerts !== "1") return;
  try {
    const r = await fetch("/api/v1/alerts");
    if (!r.ok) return;
    const body = await r.json();
    const list = Array.isArray(body) ? body : body.alerts || body.data || [];
    alertsFiring = list.filter((a) => (a.state || a.status || "firing") === "firing").length;
    schedule();
  } catch { /* the hub is restarting: keep the last figure */ }
}

// ---- start ----------------------------------------------------------------------------------------------

const params = readUrl();
fillLabelOptions(params);
for (const b of $$("#view button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
layout();
for (const el of [ctl.status, ctl.label, ctl.free, ctl.sort, ctl.group]) el.addEventListener("change", () => { writeUrl(); layout(); });
let qTimer = 0;
ctl.q.addEventListener("input", () => { clearTimeout(qTimer); qTimer = setTimeout(() => { writeUrl(); layout(); }, 150); });
$("#view").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-view]");
  if (!b) return;
  view = b.dataset.view;
  localStorage.setItem("gpufleet-view", view);
  for (const x of $$("#view button")) x.setAttribute("aria-pressed", String(x === b));
  writeUrl();
  layout();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement !== ctl.q) { e.preventDefault(); ctl.q.focus(); }
});
live({ fleet: 1, since: `${init.epoch}.${init.seq}` }, { fleet: apply });
pollAlerts();
setInterval(pollAlerts, 15000);
window.gpufleet = { nodes, stats: () => ({ nodes: nodes.size, cards: els.size, dirty: dirty.size }) };
document.body.dataset.ready = "1";
// For benchmarks/bench_ui.py: when the first layout has been painted.
requestAnimationFrame(() => setTimeout(() => { window.gpufleetPainted = performance.now(); }));
