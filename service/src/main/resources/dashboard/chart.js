// Small inline-SVG charts: a line chart (steps on x, linear or log y, a threshold line, alert
// markers) and a bar/spectrum plot on a log scale. Colours come from CSS classes (style.css), so
// light and dark themes need nothing here. Labels and tooltips are text nodes only.
import { s, fmt } from './dom.js';

/** Axis tick label: short, no trailing zeros (0.25, 1e-4, 2.5e5). */
export function tickFmt(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [m, e] = v.toExponential(2).split('e');
    return `${Number(m)}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(4)));
}

const W = 560;
const H = 240;
const M = { l: 58, r: 16, t: 30, b: 36 };
const PW = W - M.l - M.r;
const PH = H - M.t - M.b;

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return out;
}

/** Powers of ten inside [min, max] (min > 0); with 1, 2, 5 multiples when the range is narrow. */
export function logTicks(min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const decades = [];
  for (let e = lo; e <= hi; e++) decades.push(10 ** e);
  let ticks = decades.filter((v) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9));
  if (ticks.length < 3) {
    ticks = [];
    for (const d of decades) for (const m of [1, 2, 5]) {
      const v = Number((d * m).toPrecision(6));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  if (ticks.length > 8) {
    const every = Math.ceil(ticks.length / 7);
    ticks = ticks.filter((_, i) => i % every === 0);
  }
  return ticks;
}

function scaleLinear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function scaleLog(d0, d1, r0, r1) {
  const l0 = Math.log10(d0);
  const l1 = Math.log10(d1);
  const k = l1 === l0 ? 0 : (r1 - r0) / (l1 - l0);
  return (v) => r0 + (Math.log10(Math.max(v, d0)) - l0) * k;
}

const r1 = (v) => Math.round(v * 10) / 10;

function yDomain(values, logY) {
  if (logY) {
    const pos = values.filter((v) => v > 0 && Number.isFinite(v));
    if (pos.length === 0) return [1e-3, 1];
    let lo = Math.min(...pos);
    let hi = Math.max(...pos);
    if (hi / lo < 10) { lo /= 1.5; hi *= 1.5; } else { lo /= 1.2; hi *= 1.2; }
    return [lo, hi];
  }
  const fin = values.filter(Number.isFinite);
  if (fin.length === 0) return [0, 1];
  let lo = Math.min(...fin);
  let hi = Math.max(...fin);
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function frame(svg, { title, legend, xTicks, yTicks, x, y, xLabel, yFormat, xFormat }) {
  svg.appendChild(s('rect', { class: 'plot-bg', x: M.l, y: M.t, width: PW, height: PH }));
  for (const t of yTicks) {
    const yy = r1(y(t));
    svg.appendChild(s('line', { class: 'grid', x1: M.l, x2: M.l + PW, y1: yy, y2: yy }));
    svg.appendChild(s('text', { class: 'tick', x: M.l - 6, y: yy + 4, 'text-anchor': 'end' }, yFormat(t)));
  }
  for (const t of xTicks) {
    const xx = r1(x(t));
    svg.appendChild(s('line', { class: 'grid', x1: xx, x2: xx, y1: M.t, y2: M.t + PH }));
    svg.appendChild(s('text', { class: 'tick', x: xx, y: M.t + PH + 16, 'text-anchor': 'middle' }, xFormat(t)));
  }
  svg.appendChild(s('line', { class: 'axis', x1: M.l, x2: M.l + PW, y1: M.t + PH, y2: M.t + PH }));
  svg.appendChild(s('line', { class: 'axis', x1: M.l, x2: M.l, y1: M.t, y2: M.t + PH }));
  if (xLabel) svg.appendChild(s('text', { class: 'axis-label', x: M.l + PW, y: H - 4, 'text-anchor': 'end' }, xLabel));
  svg.appendChild(s('text', { class: 'chart-title', x: 4, y: 18 }, title));
  let lx = W - M.r;
  const room = W - M.r - (title.length * 7.2 + 16); // legend to the right of the title, never over it
  const per = Math.max(6, Math.floor(room / Math.max(1, legend.length) / 5.9) - 4);
  for (const item of [...legend].reverse()) {
    const label = item.label.length > per ? `${item.label.slice(0, per - 1)}…` : item.label;
    const text = s('text', { class: 'legend', x: lx, y: 18, 'text-anchor': 'end' }, label, label !== item.label ? s('title', null, item.label) : null);
    svg.appendChild(text);
    lx -= label.length * 5.9 + 5;
    svg.appendChild(s('rect', { class: `swatch ${item.cls}`, x: lx - 10, y: 10, width: 10, height: 10, rx: 2 }));
    lx -= 20;
  }
}

function emptyChart(svg, title, text) {
  svg.appendChild(s('rect', { class: 'plot-bg', x: M.l, y: M.t, width: PW, height: PH }));
  svg.appendChild(s('text', { class: 'chart-title', x: 4, y: 18 }, title));
  svg.appendChild(s('text', { class: 'empty', x: M.l + PW / 2, y: M.t + PH / 2, 'text-anchor': 'middle' }, text));
  return svg;
}

function root(label, dataset) {
  return s('svg', {
    class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet', dataset,
  }, s('title', null, label));
}

/**
 * Line chart.
 * opts.series: [{label, points: [{x, y, title?}]}] (x = step); opts.logY; opts.threshold: {y, label};
 * opts.markers: [{x, y, label, cls}] (alert firing points); opts.yFormat; opts.title; opts.dataset.
 * Every point is a <circle class="pt">, so tests can count what is drawn.
 */
export function lineChart(opts) {
  const { title, series = [], logY = false, threshold = null, markers = [], emptyText = 'no data yet' } = opts;
  const yFormat = opts.yFormat || tickFmt;
  const pointFormatDefault = (v) => fmt(v, 4);
  const pointFormat = opts.pointFormat || (opts.yFormat ? yFormat : pointFormatDefault);
  const all = series.flatMap((se) => se.points);
  const summary = all.length === 0 ? `${title}: no data`
    : `${title}: ${series.map((se) => `${se.label} ${se.points.length} points${se.points.length ? `, latest ${pointFormat(se.points[se.points.length - 1].y)} at step ${se.points[se.points.length - 1].x}` : ''}`).join('; ')}`
      + (threshold ? `; threshold ${pointFormat(threshold.y)}` : '') + (markers.length ? `; ${markers.length} alert markers` : '');
  const svg = root(summary, opts.dataset);
  if (all.length === 0) return emptyChart(svg, title, emptyText);

  const xs = [...all.map((p) => p.x), ...markers.map((m) => m.x)];
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const ys = [...all.map((p) => p.y), ...markers.map((m) => m.y)];
  if (threshold && Number.isFinite(threshold.y)) ys.push(threshold.y);
  const [y0, y1] = yDomain(ys, logY);
  const x = scaleLinear(x0, x1, M.l, M.l + PW);
  const y = (logY ? scaleLog : scaleLinear)(y0, y1, M.t + PH, M.t);
  const xTicks = niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t)); // steps are whole numbers
  const yTicks = logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
  const legend = series.map((se, i) => ({ label: se.label, cls: `s${i}` }));
  if (threshold) legend.push({ label: threshold.label || 'threshold', cls: 'thr' });
  if (markers.length) legend.push({ label: 'alert', cls: 'mk' });
  frame(svg, { title, legend, xTicks, yTicks, x, y, xLabel: opts.xLabel || 'step', yFormat, xFormat: tickFmt });

  const plot = s('g', { class: 'plot' });
  svg.appendChild(plot);
  if (threshold && Number.isFinite(threshold.y)) {
    const ty = r1(y(threshold.y));
    plot.appendChild(s('line', { class: 'threshold', x1: M.l, x2: M.l + PW, y1: ty, y2: ty },
      s('title', null, `${threshold.title || threshold.label || 'threshold'}: ${pointFormat(threshold.y)}`)));
  }
  series.forEach((se, i) => {
    const pts = [...se.points].sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      const d = pts.map((p, k) => `${k ? 'L' : 'M'}${r1(x(p.x))},${r1(y(p.y))}`).join('');
      plot.appendChild(s('path', { class: `line s${i}`, d }));
    }
    const r = pts.length > 200 ? 1.4 : pts.length > 60 ? 2 : 3;
    const g = s('g', { class: `pts s${i}` });
    for (const p of pts) {
      const clamped = logY && !(p.y > 0);
      g.appendChild(s('circle', { class: clamped ? 'pt clamped' : 'pt', cx: r1(x(p.x)), cy: r1(y(clamped ? y0 : p.y)), r },
        s('title', null, p.title || `step ${p.x}: ${pointFormat(p.y)}`)));
    }
    plot.appendChild(g);
  });
  const mg = s('g', { class: 'markers' });
  for (const m of markers) {
    const cx = r1(x(m.x));
    const cy = r1(y(logY && !(m.y > 0) ? y0 : m.y));
    mg.appendChild(s('path', { class: ['marker', m.cls], d: `M${cx},${cy - 7}L${cx + 6},${cy + 4}L${cx - 6},${cy + 4}Z` },
      s('title', null, m.label)));
  }
  plot.appendChild(mg);
  return svg;
}

/**
 * Bar/spectrum plot of eigenvalues (descending) on a log y axis.
 * opts: {title, values, indices?, size?, cls, dataset, note}. indices are the eigenvalue positions
 * of values (0-based) when the service sent a log-spaced subset of `size` eigenvalues: then x is
 * a log axis of the position, else positions 1..n on a linear axis. Non-positive values sit on
 * the floor.
 */
export function spectrumChart(opts) {
  const { title, values = [], emptyText = 'no spectrum yet' } = opts;
  const n = values.length;
  const idx = Array.isArray(opts.indices) && opts.indices.length === n ? opts.indices.map(Number) : values.map((_, i) => i);
  const size = Number.isFinite(Number(opts.size)) && Number(opts.size) >= n ? Number(opts.size) : n;
  const subsampled = size > n;
  const pos = values.filter((v) => v > 0);
  const summary = n === 0 ? `${title}: no data`
    : `${title}: ${subsampled ? `${n} of ${size}` : n} eigenvalues from ${fmt(values[0])} to ${fmt(values[n - 1])}`;
  const svg = root(summary, opts.dataset);
  if (n === 0 || pos.length === 0) return emptyChart(svg, title, n === 0 ? emptyText : 'all eigenvalues are 0');
  let lo = Math.min(...pos);
  const hi = Math.max(...pos) * 1.5;
  lo = Math.max(lo / 1.5, hi * 1e-14);
  // x in eigenvalue rank (1-based); bars are centred on their rank
  const x = subsampled ? scaleLog(1, size, M.l + 3, M.l + PW - 3) : scaleLinear(0.5, n + 0.5, M.l, M.l + PW);
  const y = scaleLog(lo, hi, M.t + PH, M.t);
  const xTicks = subsampled ? logTicks(1, size) : niceTicks(1, n, 6).filter((t) => Number.isInteger(t) && t >= 1);
  frame(svg, {
    title, legend: opts.note ? [{ label: opts.note, cls: opts.cls || 's0' }] : [], xTicks, yTicks: logTicks(lo, hi), x, y,
    xLabel: opts.xLabel || (subsampled ? 'eigenvalue rank (log, sampled)' : 'eigenvalue rank'), yFormat: tickFmt, xFormat: tickFmt,
  });
  const base = M.t + PH;
  const bw = PW / n;
  if (!subsampled && n <= 96) {
    const g = s('g', { class: `bars ${opts.cls || 's0'}` });
    values.forEach((v, i) => {
      const top = v > 0 ? y(v) : base - 1;
      g.appendChild(s('rect', { class: 'bar', x: r1(x(i + 1) - bw * 0.4), y: r1(top), width: r1(Math.max(0.6, bw * 0.8)), height: r1(Math.max(1, base - top)) },
        s('title', null, `#${i + 1}: ${fmt(v, 4)}`)));
    });
    svg.appendChild(g);
  } else if (subsampled) {
    // a sampled spectrum on a log rank axis reads best as a curve over a filled area
    const pts = values.map((v, i) => `${r1(x(idx[i] + 1))},${r1(v > 0 ? y(v) : base - 1)}`);
    const g = s('g', { class: `spectrum ${opts.cls || 's0'}` });
    g.appendChild(s('path', { class: 'area', d: `M${r1(x(idx[0] + 1))},${base}L${pts.join('L')}L${r1(x(idx[n - 1] + 1))},${base}Z` }));
    g.appendChild(s('path', { class: 'curve', d: `M${pts.join('L')}` }));
    svg.appendChild(g);
  } else {
    const d = values.map((v, i) => `M${r1(x(i + 1))},${base}V${r1(v > 0 ? y(v) : base - 1)}`).join('');
    svg.appendChild(s('path', { class: `stems ${opts.cls || 's0'}`, d, 'stroke-width': Math.max(0.5, r1(Math.min(bw * 0.8, 3))) }));
  }
  return svg;
}
