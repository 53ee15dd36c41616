// Shared by every page: formatting, theme, escaping and the live (SSE) connection.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

// Changes (POST, DELETE) carry the session's CSRF token, which the page embeds in a <meta>.
export function csrfHeaders() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? { "X-CSRF-Token": m.content } : {};
}

export function initial() {
  const el = document.getElementById("initial");
  return el ? JSON.parse(el.textContent) : {};
}

// What a GPU's readings call for ("drain", "reset" or null), by gpufleet.health's rule table,
// which the page embeds: the same rules the hub's alerts follow.
export function gpuHealth(values, rules) {
  const fired = rules.filter((r) => values[r.key] != null && values[r.key] > r.above);
  const action = fired.some((r) => r.action === "drain") ? "drain" : fired.length ? "reset" : null;
  return { action, reasons: fired.map((r) => r.reason) };
}

// ---- units ----------------------------------------------------------------------------------
const IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
export function bytes(n, digits = 1) {
  if (n == null || isNaN(n)) return "—";
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < IEC.length - 1) { v /= 1024; i++; }
  return `${n < 0 ? "-" : ""}${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(digits)} ${IEC[i]}`;
}
export const rate = (n) => (n == null ? "—" : `${bytes(n)}/s`);
export const pct = (ratio, digits = 0) => (ratio == null ? "—" : `${(ratio * 100).toFixed(digits)}%`);
export const ipct = (p) => (p == null ? "—" : `${p}%`);
export const celsius = (c) => (c == null ? "—" : `${Math.round(c)} °C`);
export function watts(w) {
  if (w == null) return "—";
  return w >= 10000 ? `${(w / 1000).toFixed(1)} kW` : `${Math.round(w)} W`;
}
export function hertz(h) {
  if (h == null) return "—";
  return h >= 1e9 ? `${(h / 1e9).toFixed(2)} GHz` : `${Math.round(h / 1e6)} MHz`;
}
export function duration(s) {
  if (s == null || isNaN(s)) return "—";
  s = Math.max(0, s);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
export const ago = (t) => (t ? `${duration(Date.now() / 1000 - t)} ago` : "never");
export const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "—");
export const num = (x, d = 0) => (x == null ? "—" : Number(x).toLocaleString(undefined, { maximumFractionDigits: d }));

// A catalogue metric's value in its unit, as people read it.
export function human(value, meta) {
  if (value == null) return "—";
  if (!meta) return num(value, 3);
  if (meta.display === "percent" || meta.unit === "ratio") return pct(value, 1);
  switch (meta.unit) {
    case "bytes": return meta.name.endsWith("_per_second") ? rate(value) : bytes(value);
    case "celsius": return celsius(value);
    case "watts": return `${num(value, 1)} W`;
    case "joules": return value > 3.6e6 ? `${num(value / 3.6e6, 2)} kWh` : `${num(value, 0)} J`;
    case "hertz": return hertz(value);
    case "seconds": return meta.name.includes("timestamp") || meta.name.includes("boot_time") ? when(value) : duration(value);
    default: return num(value, 2);
  }
}

// Heat colour for 0..100 (utilisation, temperature scaled by the caller).
export function heat(p) {
  if (p == null) return "var(--cold)";
  const x = Math.max(0, Math.min(100, p));
  // One hue, light to deep: busy is good news, so it must not end in the alarm red (--hot).
  return x <= 60
    ? `color-mix(in srgb, var(--heat) ${Math.round((x / 60) * 100)}%, var(--cold))`
    : `color-mix(in srgb, var(--busy) ${Math.round(((x - 60) / 40) * 100)}%, var(--heat))`;
}

// ---- theme ------------------------------------------------------------------------------------
export function setupTheme() {
  const btn = document.getElementById("theme");
  if (!btn) return;
  const label = () => {
    const dark = document.documentElement.dataset.theme === "dark";
    btn.textContent = dark ? "☀ Light" : "☾ Dark";
    btn.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
  };
  label();
  btn.addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("gpufleet-theme", next);
    label();
    window.dispatchEvent(new Event("themechange"));
  });
}

// ---- live updates ---------------------------------------------------------------------------------
// One EventSource per page. The browser retries by itself after a dropped connection; when it gives
// up (an error status, a proxy page) or the stream goes silent (no ping for 3 intervals), we close it
// and open a new one with backoff, passing the last event id so the hub sends only what we missed.
const WATCHDOG_MS = 30000;

export function live(params, handlers) {
  const conn = document.getElementById("conn");
  let es = null;
  let lastId = params.since || "";
  let backoff = 1000;
  let retryTimer = 0;
  let watchdog = 0;
  let epoch = null;

  const show = (state, text) => {
    if (!conn) return;
    conn.dataset.state = state;
    conn.textContent = text;
  };
  const kick = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => restart("no data"), WATCHDOG_MS);
  };
  const restart = () => {
    if (es) es.close();
    es = null;
    show("reconnecting", "reconnecting…");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
  function connect() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null && k !== "since") q.set(k, v);
    if (lastId) q.set("since", lastId);
    es = new EventSource(`/api/v1/events?${q}`);
    kick();
    es.onopen = () => { backoff = 1000; show("live", "live"); };
    es.onerror = () => {
      show("reconnecting", "reconnecting…");
      if (es && es.readyState === EventSource.CLOSED) restart();
    };
    const on = (type, fn) => es.addEventListener(type, (e) => {
      kick();
      if (e.lastEventId) lastId = e.lastEventId;
      show("live", "live");
      if (fn) fn(JSON.parse(e.data));
    });
    on("hello", (d) => {
      if (epoch && d.epoch !== epoch && handlers.restart) handlers.restart(d);
      epoch = d.epoch;
    });
    on("ping", null);
    for (const type of ["fleet", "node", "status", "users", "user"]) if (handlers[type]) on(type, handlers[type]);
  }
  window.addEventListener("online", restart);
  connect();
  return { close: () => { clearTimeout(watchdog); clearTimeout(retryTimer); if (es) es.close(); } };
}

// Coalesce many updates into one DOM pass per animation frame (and none while the tab is hidden:
// the browser does not run rAF callbacks then, so work waits for the page to be seen).
export function frameScheduler(render) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  };
}

// Sortable table: headers are <th data-key="..." data-type="num|str"><button>..</button></th>.
export function sortable(table, onSort, initialKey, initialDir = "descending") {
  let key = initialKey;
  let dir = initialDir;
  const ths = $$("th[data-key]", table);
  const mark = () => ths.forEach((th) => th.setAttribute("aria-sort", th.dataset.key === key ? dir : "none"));
  ths.forEach((th) => {
    const b = th.querySelector("button");
    if (!b) return;
    b.addEventListener("click", () => {
      if (key === th.dataset.key) dir = dir === "ascending" ? "descending" : "ascending";
      else { key = th.dataset.key; dir = th.dataset.type === "str" ? "ascending" : "descending"; }
      mark();
      onSort();
    });
  });
  mark();
  return {
    sort(rows, get) {
      const f = dir === "ascending" ? 1 : -1;
      return rows.sort((a, b) => {
        const x = get(a, key);
        const y = get(b, key);
        if (x == null && y == null) return 0;
        if (x == null) return 1;
        if (y == null) return -1;
        return (typeof x === "string" ? x.localeCompare(y, undefined, { numeric: true }) : x - y) * f;
      });
    },
  };
}

setupTheme();
