// Time-series charts on uPlot (served from node_modules by the hub): history from
// /api/v1/query_range, extended live with a bounded window so a page open for days stays small.
import { $, esc } from "./common.js";

const PALETTE = ["#2f6fde", "#e0663d", "#1f9d55", "#a855f7", "#d4a017", "#0ea5b7", "#d23c8a", "#6b7a99",
  "#84cc16", "#f43f5e", "#14b8a6", "#f59e0b"];
export const RANGE_SECONDS = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
const POINTS = 600; // per series for a whole range: enough for a laptop-wide chart
const MAX_POINTS = 2400; // hard cap on what a chart holds, however long the page stays open

// Byte axes tick at round binary sizes (8 GiB, 16 GiB, ...), not at decimal steps that read
// 18.6 / 37.3 / 55.9 GiB. uPlot picks the smallest increment that leaves room between labels.
const BYTE_INCRS = [0, 1, 2, 3, 4, 5].flatMap((p) => [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((m) => m * 1024 ** p));

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

export function chartsAvailable() {
  return typeof window.uPlot === "function";
}

export class TimeChart {
  // spec: {title, series: [labels], fmt: value -> text, min, max, colors, unit ("bytes": binary ticks)}
  constructor(container, spec) {
    this.spec = spec;
    this.el = document.createElement("div");
    this.el.className = "chart";
    this.el.dataset.chart = spec.id || spec.title;
    this.el.innerHTML = `<h3>${esc(spec.title)} <span class="muted nodata-note">· no data in this range</span></h3><div class="plot" data-points="0"></div>`;
    container.appendChild(this.el);
    this.plotEl = $(".plot", this.el);
    this.data = [[], ...spec.series.map(() => [])];
    this.range = 3600;
    this.step = 6;
    this.end = Date.now() / 1000; // the x axis always spans [end - range, end]: empty or not
    this.u = null;
    if (!chartsAvailable()) {
      this.plotEl.innerHTML = `<div class="empty">${esc(window.GPUFLEET_CHARTS_MISSING || "Charts could not load.")}</div>`;
      return;
    }
    this.build();
    this.resizer = new ResizeObserver(() => {
      if (this.u && this.plotEl.clientWidth) this.u.setSize({ width: this.plotEl.clientWidth, height: 200 });
    });
    this.resizer.observe(this.plotEl);
    window.addEventListener("themechange", () => this.build());
  }

  build() {
    if (this.u) this.u.destroy();
    const fg = css("--muted");
    const grid = css("--line");
    const fmt = this.spec.fmt || ((v) => String(v));
    // A binary tick is a whole number of its unit: "16 GiB", not "16.0 GiB".
    const tick = this.spec.unit === "bytes" ? (v) => String(fmt(v)).replace(/\.0 /, " ") : fmt;
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const scaleY = {};
    if (this.spec.min != null || this.spec.max != null) {
      scaleY.range = (u, lo, hi) => [this.spec.min ?? lo, Math.max(this.spec.max ?? hi, hi)];
    }
    const colors = this.spec.colors || PALETTE;
    const opts = {
      width: Math.max(this.plotEl.clientWidth, 300),
      height: 200,
      series: [{}, ...this.spec.series.map((label, i) => ({
        label, stroke: colors[i % colors.length], width: 1.5, points: { show: false }, spanGaps: true,
        value: (u, v) => (v == null ? "—" : fmt(v)),
      }))],
      axes: [axis, { ...axis, size: 86, values: (u, vals) => {
        this.plotEl.dataset.yticks = vals.filter((v) => v != null).join(","); // for tests and the curious
        return vals.map((v) => (v == null ? "" : tick(v)));
      },
        ...(this.spec.unit === "bytes" ? { incrs: BYTE_INCRS } : {}) }],
      // The picked range, not the data's extent: 24h shows 24 hours even when 15 minutes hold data,
      // and an empty chart shows the range too (uPlot's default for no data is years wide).
      scales: { x: { time: true, range: () => [this.end - this.range, this.end] }, y: scaleY },
      legend: { live: true },
      hooks: { setScale: [(u, key) => {
        if (key === "x") this.plotEl.dataset.span = String(Math.round(u.scales.x.max - u.scales.x.min)); // seconds shown
      }] },
      cursor: { drag: { x: true, y: false } },
    };
    this.plotEl.textContent = "";
    this.u = new window.uPlot(opts, this.data, this.plotEl);
  }

  // series: arrays of {timestamps, values}, in the order of spec.series (missing -> empty).
  load(seriesList, range, step, end = Date.now() / 1000) {
    this.range = range;
    this.step = step;
    this.end = end;
    const times = new Set();
    for (const s of seriesList) if (s) for (const t of s.timestamps) times.add(t);
    const xs = Array.from(times).sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const ys = seriesList.map((s) => {
      const col = new Array(xs.length).fill(null);
      if (s) s.timestamps.forEach((t, i) => { col[index.get(t)] = s.values[i]; });
      return col;
    });
    while (ys.length < this.spec.series.length) ys.push(new Array(xs.length).fill(null));
    this.data = [xs, ...ys];
    this.redraw();
  }

  // A live reading: appended when at least one step after the last point; old points fall off.
  push(t, values) {
    const xs = this.data[0];
    const last = xs.length ? xs[xs.length - 1] : -Infinity;
    if (t - last < this.step * 0.9) return;
    xs.push(t);
    this.end = Math.max(this.end, t);
    values.forEach((v, i) => this.data[i + 1] && this.data[i + 1].push(v ?? null));
    const cutoff = t - this.range;
    let drop = 0;
    while (drop < xs.length && xs[drop] < cutoff) drop++;
    drop = Math.max(drop, xs.length - MAX_POINTS);
    if (drop > 0) for (const col of this.data) col.splice(0, drop);
    this.redraw();
  }

  redraw() {
    this.plotEl.dataset.points = String(this.data[0].length);
    this.plotEl.dataset.filled = this.data.slice(1).map((col) => col.filter((v) => v != null).length).join(","); // per line, for tests
    const any = this.data.slice(1).some((col) => col.some((v) => v != null));
    this.el.classList.toggle("nodata", !any);
    if (this.u) {
      this.u.setData(this.data);
      // uPlot fits x to the data whenever there is any: put the picked range back.
      if (this.data[0].length) this.u.setScale("x", { min: this.end - this.range, max: this.end });
    }
  }
}

// Fetch history for one metric; returns the API's series list.
export async function history(metric, matchers, rangeSeconds, agg = "avg", end = alignedNow(rangeSeconds)) {
  const q = new URLSearchParams({ metric, start: String(end - rangeSeconds), end: String(end), points: String(POINTS), agg });
  for (const m of matchers) q.append("match", m);
  const r = await fetch(`/api/v1/query_range?${q}`);
  if (!r.ok) throw new Error(`${metric}: HTTP ${r.status}`);
  return r.json();
}

export const stepFor = (rangeSeconds) => Math.max(1, rangeSeconds / POINTS);
// One end time for every query of a chart set, on a step boundary, so all series share timestamps.
export const alignedNow = (rangeSeconds) => {
  const step = stepFor(rangeSeconds);
  return Math.ceil(Date.now() / 1000 / step) * step;
};

// Sum many series (e.g. one user's series on every node) into one, by timestamp.
export function sumSeries(series) {
  const acc = new Map();
  for (const s of series) s.timestamps.forEach((t, i) => {
    const v = s.values[i];
    if (v != null) acc.set(t, (acc.get(t) || 0) + v);
  });
  const ts = Array.from(acc.keys()).sort((a, b) => a - b);
  return { timestamps: ts, values: ts.map((t) => acc.get(t)) };
}

// The range picker shared by pages with charts; the choice lives in the URL (?range=6h).
export function rangePicker(container, ranges, onChange) {
  const url = new URL(location.href);
  let current = url.searchParams.get("range");
  if (!RANGE_SECONDS[current]) current = "1h";
  container.innerHTML = `<span class="muted">Range</span> <span class="seg" role="group" aria-label="Time range">${
    ranges.map((r) => `<button type="button" data-range="${r}" aria-pressed="${r === current}">${r}</button>`).join("")}</span>`;
  container.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-range]");
    if (!b) return;
    current = b.dataset.range;
    container.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
    const u = new URL(location.href);
    u.searchParams.set("range", current);
    history_replace(u);
    onChange(RANGE_SECONDS[current]);
  });
  return RANGE_SECONDS[current];
}

function history_replace(u) {
  window.history.replaceState(null, "", u);
}

// A set of charts over one range. spec: {id, title, fmt, min, max, unit, lines: [{metric, match, label,
// select(labels) -> bool, live(snapshot) -> value}]}. Lines sharing metric+match are fetched once.
export class ChartSet {
  constructor(container, specs) {
    this.specs = specs;
    this.charts = specs.map((s) => new TimeChart(container, { id: s.id, title: s.title, fmt: s.fmt, min: s.min, max: s.max,
      unit: s.unit, series: s.lines.map((l) => l.label) }));
    this.range = 3600;
    this.loading = 0;
  }

  async load(rangeSeconds) {
    this.range = rangeSeconds;
    const token = ++this.loading;
    const queries = new Map();
    const end = alignedNow(rangeSeconds);
    for (const s of this.specs) for (const l of s.lines) {
      const key = `${l.metric}|${l.match.join(",")}|${l.agg || "avg"}`;
      if (!queries.has(key)) queries.set(key, history(l.metric, l.match, rangeSeconds, l.agg || "avg", end).catch(() => ({ series: [] })));
    }
    const results = new Map();
    for (const [k, p] of queries) results.set(k, await p);
    if (token !== this.loading) return; // a newer range was picked meanwhile
    const step = stepFor(rangeSeconds);
    this.specs.forEach((s, i) => {
      const series = s.lines.map((l) => {
        const r = results.get(`${l.metric}|${l.match.join(",")}|${l.agg || "avg"}`);
        const matching = r.series.filter((x) => (l.select ? l.select(x.labels) : true));
        const one = matching.length > 1 ? sumSeries(matching) : matching[0] || null;
        return one && l.scale ? { timestamps: one.timestamps, values: one.values.map((v) => (v == null ? null : v * l.scale)) } : one;
      });
      this.charts[i].load(series, rangeSeconds, step, end);
    });
  }

  push(t, snapshot) {
    this.specs.forEach((s, i) => this.charts[i].push(t, s.lines.map((l) => (l.live ? l.live(snapshot) : null))));
  }
}
