// DOM construction without HTML parsing. Every string the service sends (run ids, model names,
// alert summaries, sample ids, ...) may be hostile: it only ever becomes a text node or an
// attribute value here, never markup. No innerHTML / insertAdjacentHTML / document.write anywhere.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  if (!attrs) return el;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [type, fn] of Object.entries(v)) el.addEventListener(type, fn);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (k.startsWith('on')) {
      throw new Error(`inline handler attribute ${k} refused`);
    } else if (k === 'href' || k === 'src') {
      const s = String(v);
      // only in-page routes and same-origin absolute paths: never javascript:, data:, other hosts
      if (!(s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//')) || s.startsWith('blob:'))) {
        throw new Error(`refused ${k} ${JSON.stringify(s)}`);
      }
      el.setAttribute(k, s);
    } else if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : String(v));
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('td', {class: 'num'}, 'text', childNode, [more]). */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replaces the children of el. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Compact number: 3 significant digits, exponent outside [1e-3, 1e5). */
export function fmt(v, digits = 3) {
  if (v === undefined || v === null || v === '') return '—';
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a >= 1e5 || a < 1e-3) return n.toExponential(digits - 1).replace('e+', 'e');
  if (Number.isInteger(n) && a < 1e5) return String(n);
  return String(Number(n.toPrecision(digits)));
}

/** ρ with enough digits to tell 0.999 from 0.9999. */
export function fmtRho(v) {
  if (v === undefined || v === null) return '—';
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (n >= 1) return '1 (no edit)';
  if (n <= 0) return 'calibrated';
  const oneMinus = 1 - n;
  const decimals = Math.min(8, Math.max(2, Math.ceil(-Math.log10(oneMinus)) + 1));
  return n.toFixed(decimals).replace(/0+$/, '');
}

const pad = (n) => String(n).padStart(2, '0');

/** Local time as YYYY-MM-DD HH:MM:SS; with compact=true only HH:MM:SS when it is today. */
export function fmtTime(ms, compact = false) {
  if (ms === undefined || ms === null || !Number.isFinite(Number(ms)) || Number(ms) <= 0) return '—';
  const d = new Date(Number(ms));
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (compact && new Date().toDateString() === d.toDateString()) return time;
  return `${day} ${time}`;
}

/** Integer with thousands separators. */
export function fmtInt(v) {
  if (v === undefined || v === null || v === '') return '—';
  const n = Number(v);
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(v);
}

/** "3 min ago" style relative time. */
export function fmtAgo(ms, now = Date.now()) {
  if (!Number.isFinite(Number(ms)) || Number(ms) <= 0) return '';
  const s = Math.round((now - Number(ms)) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtBytes(n) {
  const v = Number(n);
  if (!Number.isFinite(v) || v < 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${v} B` : `${x.toFixed(x < 10 ? 2 : 1)} ${units[i]}`;
}

/** A <time> element with the absolute time as text and the relative time as tooltip. */
export function timeEl(ms, compact = false) {
  const ok = Number.isFinite(Number(ms)) && Number(ms) > 0;
  return h('time', ok ? { datetime: new Date(Number(ms)).toISOString(), title: `${fmtTime(ms)} (${fmtAgo(ms)})` } : null, fmtTime(ms, compact));
}
