// A small line chart on a <canvas>: several series against a shared x (kimg), auto-scaled, redrawn on resize.

const COLORS = ["#2f5fd0", "#d0452f", "#1e9b54", "#a855f7", "#d97706", "#0891b2", "#db2777", "#65a30d"];

export class LineChart {
  constructor(canvas, legend, empty = "waiting for the first stats…") {
    this.canvas = canvas;
    this.empty = empty;
    this.legend = legend;
    this.series = new Map();  // name -> [[x, y], ...]
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  clear() { this.series.clear(); this.draw(); }

  /** Add one stats record: every numeric "loss/*" field becomes a point at x = record.kimg. */
  add(record) {
    for (const [key, value] of Object.entries(record)) {
      if (!key.startsWith("loss/") || typeof value !== "number" || !Number.isFinite(value)) continue;
      const name = key.slice(5);
      if (!this.series.has(name)) this.series.set(name, []);
      this.series.get(name).push([record.kimg, value]);
    }
  }

  /** Add one metrics.jsonl record (`ganforge eval snapshot`): each metric is a point at x = the snapshot's kimg. */
  addMetrics(record) {
    const x = record.protocol?.kimg;
    if (typeof x !== "number") return;
    for (const [name, value] of Object.entries(record.metrics || {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      if (!this.series.has(name)) this.series.set(name, []);
      this.series.get(name).push([x, value]);
    }
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    c.width = w * dpr; c.height = h * dpr;
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue("--muted").trim() || "#666";
    const pad = { l: 52, r: 12, t: 10, b: 26 };
    const pts = [...this.series.values()].flat();
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = fg;
    if (!pts.length) { g.fillText(this.empty, pad.l, h / 2); this.renderLegend(); return; }
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
    if (x1 === x0) x1 = x0 + 1e-3;
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const X = (x) => pad.l + (x - x0) / (x1 - x0) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - (y - y0) / (y1 - y0) * (h - pad.t - pad.b);
    g.strokeStyle = fg; g.globalAlpha = 0.25; g.beginPath();
    for (let i = 0; i <= 4; i++) { const y = pad.t + i * (h - pad.t - pad.b) / 4; g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); }
    g.stroke(); g.globalAlpha = 1;
    for (let i = 0; i <= 4; i++) {
      const v = y1 - i * (y1 - y0) / 4;
      g.fillText(Number(v.toPrecision(3)).toString(), 4, pad.t + i * (h - pad.t - pad.b) / 4 + 4);
    }
    g.fillText(`${Number(x0.toPrecision(3))} kimg`, pad.l, h - 8);
    const right = `${Number(x1.toPrecision(3))} kimg`;
    g.fillText(right, w - pad.r - g.measureText(right).width, h - 8);
    let k = 0;
    for (const points of this.series.values()) {
      g.strokeStyle = COLORS[k++ % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
      points.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.stroke();
    }
    this.renderLegend();
  }

  renderLegend() {
    if (!this.legend) return;
    this.legend.replaceChildren(...[...this.series.keys()].map((name, k) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      const sw = document.createElement("i");
      sw.style.background = COLORS[k % COLORS.length];
      const last = this.series.get(name).at(-1);
      item.append(sw, `${name} ${last ? Number(last[1].toPrecision(3)) : ""}`);
      return item;
    }));
  }
}
