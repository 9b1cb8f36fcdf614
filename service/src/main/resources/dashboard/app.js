// Curvewatch dashboard: runs list, run view (per-layer charts, top examples, alerts, snapshots,
// edit form), live updates over SSE with a polling fallback. Plain ES module, no dependencies.
// Everything the service sends is rendered through dom.js (text nodes and attributes only).
import { h, mount, fmt, fmtInt, fmtRho, fmtBytes, timeEl } from './dom.js';
import { lineChart, spectrumChart } from './chart.js';
import { LiveFeed } from './live.js';

const TOKEN_KEY = 'curvewatch.token';
const SIG = { gap: 'memorization_gap', rho: 'calibrated_rho', driftG: 'basis_drift_g', driftA: 'basis_drift_a' };
const SIGNAL_LIMIT = 5000;
const SEVERITY_RANK = { CRITICAL: 3, WARNING: 2, INFO: 1 };
const enc = encodeURIComponent;

const state = {
  route: { view: 'runs' },
  runs: [],
  alerts: [],
  run: null, // GET /api/runs/{run}
  signals: new Map(), // layer -> name -> points[]
  scores: new Map(), // layer -> scores answer
  spectra: new Map(), // layer -> spectra answer
  snapshots: [],
  guard: [], // GET /api/runs/{run}/guard: the live guard's decisions, newest first
  loadError: null,
};

let feed = null;
let viewAbort = new AbortController();
const els = {};

// ---------------------------------------------------------------- API

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorText(r) {
  try {
    const body = await r.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch { /* not JSON */ }
  return r.statusText || `HTTP ${r.status}`;
}

async function getJSON(path, { signal, allow404 = false } = {}) {
  // reads carry the token when there is one: a shared service may require the read scope (auth.read.required)
  const headers = token() ? { Accept: 'application/json', ...authHeaders() } : { Accept: 'application/json' };
  const r = await fetch(path, { headers, signal, cache: 'no-store' });
  if (allow404 && r.status === 404) return null;
  if (r.status === 401 || r.status === 403) askForToken(r.status, await errorText(r));
  if (!r.ok) throw new HttpError(r.status, await errorText(r));
  return r.json();
}

/** The service wants a (better) token for reading: say so and put the cursor in the token field. */
function askForToken(status, why) {
  document.body.dataset.needsToken = 'true';
  mount(els.notice, status === 401
    ? `This service needs an API token to show its runs (${why}). Type a token with the read scope in the “API token” field at the top; the page reloads with it.`
    : `The token was refused for reading: ${why}. Type a token with the read scope at the top.`);
  els.notice.hidden = false;
  if (els.token && document.activeElement !== els.token) els.token.focus();
}

/** The token the user typed (mirrored in sessionStorage, never in localStorage or a cookie). */
function token() {
  if (els.token) return els.token.value.trim();
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

function authHeaders() {
  return { Authorization: `Bearer ${token()}` };
}

/** A same-origin API path from the service, or null (never a javascript: or foreign URL). */
function safeApiPath(p) {
  return typeof p === 'string' && /^\/api\/[A-Za-z0-9._~:%/-]*$/.test(p) ? p : null;
}

// ---------------------------------------------------------------- loading

async function loadOverview(signal) {
  const [runs, alerts] = await Promise.all([
    getJSON('/api/runs', { signal }),
    getJSON('/api/alerts?limit=200', { signal }),
  ]);
  state.runs = Array.isArray(runs) ? runs : [];
  state.alerts = Array.isArray(alerts) ? alerts : [];
}

function groupSignals(answer) {
  const out = new Map();
  for (const se of (answer && Array.isArray(answer.series)) ? answer.series : []) {
    const layer = se.layer ?? '';
    if (!out.has(layer)) out.set(layer, new Map());
    out.get(layer).set(se.name, Array.isArray(se.points) ? [...se.points] : []);
  }
  return out;
}

async function loadRun(runId, signal) {
  const base = `/api/runs/${enc(runId)}`;
  const [run, signals, alerts, snapshots, guard] = await Promise.all([
    getJSON(base, { signal, allow404: true }),
    getJSON(`${base}/signals?limit=${SIGNAL_LIMIT}`, { signal, allow404: true }),
    getJSON(`/api/alerts?run=${enc(runId)}&limit=200`, { signal }),
    getJSON(`${base}/snapshots`, { signal, allow404: true }),
    getJSON(`${base}/guard`, { signal, allow404: true }),
  ]);
  if (run === null) {
    state.run = null;
    state.loadError = `Run ${runId} is not known to the service.`;
    return;
  }
  state.loadError = null;
  state.run = run;
  state.signals = groupSignals(signals);
  state.alerts = Array.isArray(alerts) ? alerts : [];
  state.snapshots = Array.isArray(snapshots) ? snapshots : [];
  state.guard = Array.isArray(guard) ? guard : [];
  await Promise.all(layersOf(run).map((l) => loadLayerExtras(runId, l, signal)));
}

function layersOf(run) {
  return run && Array.isArray(run.layers) ? run.layers.filter((l) => l && typeof l.name === 'string') : [];
}

/** Top EXACT scores and spectra of one layer; absent until the layer has been refreshed. */
async function loadLayerExtras(runId, layer, signal) {
  const base = `/api/runs/${enc(runId)}`;
  // the service answers 404 until a layer has an eigenbasis; its layer JSON says so first
  const refreshed = layer.spectrum_g ? true : 'refreshed_version' in layer ? known(layer.refreshed_version) : known(layer.factor_version);
  const [scores, spectra] = await Promise.all([
    getJSON(`${base}/scores?layer=${enc(layer.name)}&kind=EXACT&top=20`, { signal, allow404: true }).catch(() => null),
    refreshed
      ? getJSON(`${base}/spectra?layer=${enc(layer.name)}`, { signal, allow404: true }).catch(() => null)
      : Promise.resolve(null),
  ]);
  if (scores) state.scores.set(layer.name, scores); else state.scores.delete(layer.name);
  if (spectra) state.spectra.set(layer.name, spectra); else state.spectra.delete(layer.name);
}

async function reloadView() {
  const signal = viewAbort.signal;
  if (state.route.view === 'run') await loadRun(state.route.runId, signal);
  else await loadOverview(signal);
  if (!signal.aborted) render();
}

// ---------------------------------------------------------------- live events

function signalPoints(data) {
  // one point per event: {run_id, layer, name, step, value, ...}; a series shape is accepted too
  if (Array.isArray(data.points)) return data.points.map((p) => ({ layer: data.layer, name: data.name, ...p }));
  return [data];
}

function samePoint(a, b) {
  return a.step === b.step && a.timestamp_ms === b.timestamp_ms && a.factor_version === b.factor_version;
}

const pendingLayerReloads = new Set();
let layerReloadTimer = null;

function scheduleLayerReload(layerName) {
  pendingLayerReloads.add(layerName);
  clearTimeout(layerReloadTimer);
  layerReloadTimer = setTimeout(async () => {
    const run = state.run;
    if (!run || state.route.view !== 'run') return;
    const names = [...pendingLayerReloads];
    pendingLayerReloads.clear();
    const signal = viewAbort.signal;
    try {
      const fresh = await getJSON(`/api/runs/${enc(run.run_id)}`, { signal, allow404: true });
      if (fresh && !signal.aborted) state.run = fresh;
      await Promise.all(layersOf(state.run).filter((l) => names.includes(l.name)).map((l) => loadLayerExtras(run.run_id, l, signal)));
      if (!signal.aborted) render();
    } catch { /* the next event or poll repairs it */ }
  }, 400);
}

let runsReloadTimer = null;
function scheduleRunsReload() {
  clearTimeout(runsReloadTimer);
  runsReloadTimer = setTimeout(async () => {
    if (state.route.view !== 'runs') return;
    const signal = viewAbort.signal;
    try {
      const runs = await getJSON('/api/runs', { signal });
      if (!signal.aborted && Array.isArray(runs)) { state.runs = runs; render(); }
    } catch { /* next event or poll */ }
  }, 400);
}

function upsertBy(list, item, key) {
  const i = list.findIndex((x) => x && x[key] === item[key]);
  if (i >= 0) list[i] = item; else list.unshift(item);
}

function onEvent(type, data) {
  if (!data || typeof data !== 'object') return;
  const runView = state.route.view === 'run';
  const current = runView ? state.route.runId : null;
  if (runView && data.run_id !== undefined && data.run_id !== current) return;
  switch (type) {
    case 'signal': {
      if (!runView) return;
      for (const p of signalPoints(data)) {
        const layer = p.layer ?? '';
        if (!state.signals.has(layer)) state.signals.set(layer, new Map());
        const byName = state.signals.get(layer);
        if (!byName.has(p.name)) byName.set(p.name, []);
        const pts = byName.get(p.name);
        if (!pts.some((q) => samePoint(q, p))) {
          pts.push({ step: p.step, value: p.value, factor_version: p.factor_version, timestamp_ms: p.timestamp_ms, attributes: p.attributes || {} });
          if (pts.length > SIGNAL_LIMIT) pts.splice(0, pts.length - SIGNAL_LIMIT);
        }
        if (p.name === SIG.gap || p.name === SIG.rho) scheduleLayerReload(layer);
      }
      break;
    }
    case 'alert':
      upsertBy(state.alerts, data, 'id');
      state.alerts.sort((a, b) => (b.last_seen_ms ?? 0) - (a.last_seen_ms ?? 0));
      if (!runView) scheduleRunsReload();
      break;
    case 'guard':
      if (!runView) return;
      upsertBy(state.guard, data, 'id');
      state.guard.sort((a, b) => (b.created_ms ?? 0) - (a.created_ms ?? 0));
      break;
    case 'snapshot':
      if (!runView) return;
      upsertBy(state.snapshots, data, 'snapshot_id');
      state.snapshots.sort((a, b) => (b.created_ms ?? 0) - (a.created_ms ?? 0));
      break;
    case 'run':
      if (runView) { if (state.run) state.run = { ...state.run, ...data, layers: state.run.layers }; scheduleLayerReload(null); }
      else {
        // a run event is the registry entry only: keep last_step and firing_alerts until the reload
        const old = state.runs.find((r) => r && r.run_id === data.run_id);
        upsertBy(state.runs, old ? { ...old, ...data } : data, 'run_id');
        scheduleRunsReload();
      }
      break;
    case 'layer':
      if (!runView || !state.run) return;
      if (typeof data.name === 'string') {
        const layers = layersOf(state.run);
        const i = layers.findIndex((l) => l.name === data.name);
        if (i >= 0) layers[i] = { ...layers[i], ...data };
        state.run = { ...state.run, layers };
        scheduleLayerReload(data.name);
      }
      break;
    default:
      return;
  }
  render();
}

function startFeed() {
  if (feed) feed.stop();
  let url = state.route.view === 'run' ? `/api/events?run=${enc(state.route.runId)}` : '/api/events';
  // EventSource cannot send headers: the live endpoints also take the token as access_token
  if (token()) url += `${url.includes('?') ? '&' : '?'}access_token=${enc(token())}`;
  feed = new LiveFeed({
    url,
    onEvent,
    poll: () => reloadView(),
    onReconnect: () => { reloadView().catch(() => {}); },
    onState: showConnection,
  }).start();
}

let connTicker = null;
function showConnection(st, detail) {
  // while down, tick once a second so the "retrying in N s" countdown stays true
  clearInterval(connTicker);
  connTicker = st === 'polling' || st === 'offline' ? setInterval(() => paintConnection(st, detail), 1000) : null;
  paintConnection(st, detail);
}

function paintConnection(st, detail) {
  const el = els.conn;
  el.dataset.state = st;
  el.dataset.events = String(detail.events);
  const wait = Math.max(0, Math.round((detail.retryAt - Date.now()) / 1000));
  const text = {
    connecting: 'Connecting…',
    live: 'Live',
    polling: `Live stream down, polling every 5 s (retrying in ${wait} s)`,
    offline: `Offline (retrying in ${wait} s)`,
  }[st] || st;
  mount(els.connLabel, text);
  el.title = st === 'live' ? `Receiving live events (${detail.events} so far)` : text;
}

// ---------------------------------------------------------------- rendering helpers

function table(caption, headers, rows, opts = {}) {
  return h('table', { class: opts.class },
    h('caption', { class: opts.hideCaption ? 'sr-only' : null }, caption),
    h('thead', null, h('tr', null, headers.map((th) => h('th', { scope: 'col', class: th.cls, title: th.title }, th.label ?? th)))),
    h('tbody', null, rows));
}

function badge(text, cls) {
  return h('span', { class: ['badge', cls] }, text);
}

function statusBadge(status) {
  const s = String(status ?? 'UNKNOWN');
  const l = s.toLowerCase();
  // run statuses are enums; layer statuses are short free text ("refreshed", "refresh failed: ...")
  const cls = /fail|error|invalid|no factors|declined|refused/.test(l) ? 'st-failed'
    : /^(firing)$/.test(l) ? 'st-firing'
      : /resolved|finished|refreshed|ready|calibrated/.test(l) ? 'st-finished'
        : /running|calibrating|refreshing|waiting|pending/.test(l) ? 'st-running' : 'st-unknown';
  return h('span', { class: ['badge', cls], title: s.length > 40 ? s : null }, s.length > 40 ? `${s.slice(0, 38)}…` : s);
}

/** A version, step or count the service reports as -1 (or NaN, null) while it has none. */
function known(v) {
  return v !== undefined && v !== null && Number.isFinite(Number(v)) && Number(v) >= 0;
}
const orDash = (v, f = fmt) => (known(v) ? f(v) : '—');

function severityClass(sev) {
  const s = String(sev ?? '').toUpperCase();
  return SEVERITY_RANK[s] ? `sev-${s.toLowerCase()}` : 'sev-info';
}

function runLink(runId) {
  return h('a', { href: `#/runs/${enc(runId)}`, class: 'run-link' }, runId);
}

function section(id, title, ...body) {
  return h('section', { id, class: 'panel', 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), ...body);
}

function layerDims(l) {
  return l.d_in !== undefined && l.d_out !== undefined ? `${l.d_in} → ${l.d_out}` : '';
}

// ---------------------------------------------------------------- overview

function renderRunsTable() {
  if (state.runs.length === 0) return h('p', { class: 'empty' }, 'No runs yet: start a watched training run.');
  const rows = state.runs.map((r) => {
    const firing = Number(r.firing_alerts ?? 0);
    return h('tr', { dataset: { runId: r.run_id } },
      h('th', { scope: 'row' }, runLink(String(r.run_id))),
      h('td', { class: 'model' }, r.model ?? ''),
      h('td', null, statusBadge(r.status)),
      h('td', { class: 'layers' }, layersOf(r).map((l, i) => [i ? ' ' : '', h('span', { class: 'layer-chip' }, l.name,
        h('span', { class: 'dim' }, ` ${layerDims(l)}`))])),
      h('td', { class: 'num' }, orDash(r.last_step)),
      h('td', { class: 'num' }, firing > 0 ? badge(String(firing), 'sev-critical') : badge('0', 'muted'), h('span', { class: 'sr-only' }, ' firing alerts')),
      h('td', { class: 'source' }, r.source ?? ''),
      h('td', null, timeEl(r.created_ms, true)));
  });
  return table('Watched runs', ['Run', 'Model', 'Status', 'Layers (d_in → d_out)', { label: 'Last step', cls: 'num' },
    { label: 'Firing alerts', cls: 'num' }, 'Source', 'Created'], rows, { class: 'runs', hideCaption: true });
}

function renderOverview() {
  mount(els.main,
    section('runs', 'Runs', h('div', { class: 'table-wrap' }, renderRunsTable())),
    section('alerts', 'Alerts, all runs', renderAlerts(state.alerts, true)));
}

// ---------------------------------------------------------------- alerts

function alertGroups(alerts) {
  const groups = new Map();
  for (const a of alerts) {
    if (!a || typeof a !== 'object') continue;
    const key = a.fingerprint ?? a.id;
    const g = groups.get(key);
    if (!g) groups.set(key, { latest: a, events: [a] });
    else {
      g.events.push(a);
      if ((a.last_seen_ms ?? 0) > (g.latest.last_seen_ms ?? 0)) g.latest = a;
    }
  }
  return [...groups.values()].sort((x, y) => {
    const fx = x.latest.status === 'FIRING' ? 1 : 0;
    const fy = y.latest.status === 'FIRING' ? 1 : 0;
    if (fx !== fy) return fy - fx;
    const sx = SEVERITY_RANK[x.latest.severity] ?? 0;
    const sy = SEVERITY_RANK[y.latest.severity] ?? 0;
    if (sx !== sy) return sy - sx;
    return (y.latest.last_seen_ms ?? 0) - (x.latest.last_seen_ms ?? 0);
  });
}

function examplesTable(examples, caption) {
  const list = Array.isArray(examples) ? examples : [];
  if (list.length === 0) return h('p', { class: 'empty' }, 'no examples');
  const max = Math.max(...list.map((e) => Math.abs(Number(e.score) || 0)), 1e-300);
  return table(caption, ['#', 'Sample id', { label: 'Score', cls: 'num' }], list.map((e, i) => {
    const bar = h('span', { class: 'scorebar' });
    bar.style.width = `${Math.max(2, Math.round((Math.abs(Number(e.score) || 0) / max) * 100))}%`;
    return h('tr', null, h('td', { class: 'num dim' }, String(i + 1)), h('td', { class: 'sample' }, String(e.sample_id ?? '')),
      h('td', { class: 'num score' }, h('span', { class: 'scorecell' }, h('span', { class: 'scoretrack', 'aria-hidden': 'true' }, bar),
        h('span', null, fmt(e.score, 4)))));
  }), { class: 'examples', hideCaption: true });
}

// which alerts' details the user opened: kept open across live re-renders
const openAlerts = new Set();
function keepOpen(details, key) {
  details.addEventListener('toggle', () => { if (details.open) openAlerts.add(key); else openAlerts.delete(key); });
  return details;
}

function renderAlerts(alerts, showRun) {
  const groups = alertGroups(alerts);
  if (groups.length === 0) return h('p', { class: 'empty' }, 'No alerts.');
  return h('ul', { class: 'alerts' }, groups.map(({ latest: a, events }) => {
    const details = a.details && typeof a.details === 'object' ? Object.entries(a.details) : [];
    return h('li', { class: ['alert', severityClass(a.severity), a.status === 'FIRING' ? 'firing' : 'resolved'],
      dataset: { alertId: a.id, fingerprint: a.fingerprint } },
      h('div', { class: 'alert-head' },
        badge(String(a.severity ?? ''), severityClass(a.severity)), ' ', statusBadge(a.status), ' ',
        h('strong', { class: 'summary' }, String(a.summary ?? ''))),
      h('div', { class: 'alert-meta' },
        showRun ? [h('span', null, 'run ', runLink(String(a.run_id))), ' · '] : null,
        h('span', null, 'layer ', h('code', null, a.layer ?? 'run-level')), ' · ',
        h('span', null, 'rule ', h('code', null, String(a.rule ?? ''))), ' · ',
        h('span', null, `${a.signal ?? ''} ${fmt(a.value)} vs ${fmt(a.threshold)}`), ' · ',
        h('span', null, `step ${fmt(a.step)}`),
        events.length > 1 ? [' · ', h('span', null, `${events.length} events`)] : null),
      h('div', { class: 'alert-times' }, 'first seen ', timeEl(a.first_seen_ms), ' · last seen ', timeEl(a.last_seen_ms)),
      keepOpen(h('details', { open: openAlerts.has(a.fingerprint ?? a.id) }, h('summary', null, `Top examples (${Array.isArray(a.top_examples) ? a.top_examples.length : 0})`),
        examplesTable(a.top_examples, 'Top examples of this alert'),
        details.length ? h('dl', { class: 'kv' }, details.map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))])) : null),
      a.fingerprint ?? a.id));
  }));
}

// ---------------------------------------------------------------- run view

function seriesOf(layer, name) {
  const m = state.signals.get(layer);
  return (m && m.get(name)) || [];
}

function toXY(points, f = (v) => v) {
  return points.filter((p) => Number.isFinite(Number(p.step)) && Number.isFinite(Number(p.value)))
    .map((p) => ({ x: Number(p.step), y: f(Number(p.value)) }));
}

function gapChart(layer) {
  const pts = seriesOf(layer, SIG.gap);
  const alerts = state.alerts.filter((a) => a && a.layer === layer && a.signal === SIG.gap);
  const latest = [...alerts].sort((a, b) => (b.last_seen_ms ?? 0) - (a.last_seen_ms ?? 0))[0];
  const markers = alerts.filter((a) => Number.isFinite(Number(a.step)) && Number.isFinite(Number(a.value))).map((a) => ({
    x: Number(a.step), y: Number(a.value), cls: a.status === 'FIRING' ? 'firing' : 'resolved',
    label: `${a.status} ${a.severity} at step ${a.step}: ${a.summary ?? ''}`,
  }));
  return lineChart({
    title: 'Memorization gap (nats)', series: [{ label: 'gap', points: toXY(pts) }],
    threshold: latest && Number.isFinite(Number(latest.threshold)) ? { y: Number(latest.threshold), label: 'threshold', title: `threshold of rule ${latest.rule}` } : null,
    markers, dataset: { chart: SIG.gap, layer },
  });
}

const RHO_FLOOR = 1e-7;

function rhoChart(layer) {
  // ρ is searched on a log scale of 1 − ρ (DESIGN §3): plot 1 − ρ on a log axis, label it as ρ
  const pts = toXY(seriesOf(layer, SIG.rho), (v) => Math.max(RHO_FLOOR, 1 - v));
  return lineChart({
    title: 'Calibrated ρ (log scale of 1 − ρ)', series: [{ label: 'ρ', points: pts }], logY: true,
    yFormat: (v) => (v <= RHO_FLOOR * 1.0001 ? '1' : fmtRho(1 - v)), pointFormat: (v) => fmtRho(1 - v),
    dataset: { chart: SIG.rho, layer },
  });
}

function driftChart(layer) {
  const g = toXY(seriesOf(layer, SIG.driftG));
  const a = toXY(seriesOf(layer, SIG.driftA));
  const logY = [...g, ...a].some((p) => p.y > 0);
  return lineChart({
    title: 'Basis drift (off-diagonal mass)', series: [{ label: 'G', points: g }, { label: 'A', points: a }], logY,
    emptyText: 'no drift yet (needs two refreshes)', dataset: { chart: 'basis_drift', layer },
  });
}

function concentration(sp) {
  if (!sp || typeof sp !== 'object') return null;
  const parts = [];
  if (sp.count50 !== undefined) parts.push(`50%: ${fmt(sp.count50)}`);
  if (sp.count90 !== undefined) parts.push(`90%: ${fmt(sp.count90)}`);
  if (sp.count99 !== undefined) parts.push(`99%: ${fmt(sp.count99)}`);
  return parts.length ? `mass in ${parts.join(', ')}` : null;
}

function spectrumCharts(l) {
  const sp = state.spectra.get(l.name);
  const g = sp && Array.isArray(sp.g) ? sp.g.map(Number) : [];
  const a = sp && Array.isArray(sp.a) ? sp.a.map(Number) : [];
  const at = sp && known(sp.step) ? `, step ${fmt(sp.step)}` : '';
  return [
    spectrumChart({ title: `Spectrum of G (λ, d_out ${l.d_out ?? '?'}${at})`, values: g, indices: sp && sp.g_index, size: sp && sp.g_size,
      cls: 's0', note: concentration(l.spectrum_g), dataset: { chart: 'spectrum_g', layer: l.name } }),
    spectrumChart({ title: `Spectrum of A (μ, d_in ${l.d_in ?? '?'}${at})`, values: a, indices: sp && sp.a_index, size: sp && sp.a_size,
      cls: 's1', note: concentration(l.spectrum_a), dataset: { chart: 'spectrum_a', layer: l.name } }),
  ];
}

function topExamples(l) {
  const sc = state.scores.get(l.name);
  const top = sc && Array.isArray(sc.top) ? sc.top : [];
  const title = sc && top.length && known(sc.step) ? `Top examples by EXACT score (step ${fmt(sc.step)}, ρ ${fmtRho(sc.rho)})` : 'Top examples by EXACT score';
  return h('figure', { class: 'examples-fig', dataset: { layer: l.name } },
    h('figcaption', null, title),
    top.length ? examplesTable(top, `Top examples of ${l.name} by EXACT score`) : h('p', { class: 'empty' }, 'no EXACT scores yet (needs a calibrated refresh)'));
}

function layerJump(run, name) {
  const a = h('a', { href: `#/runs/${enc(run.run_id)}`, class: 'layer-link' }, name);
  a.addEventListener('click', (ev) => {
    ev.preventDefault();
    const card = document.getElementById(`layer-${name}`);
    if (card) { card.scrollIntoView({ block: 'start' }); card.focus({ preventScroll: true }); }
  });
  return a;
}

function layerSummary(run) {
  const rows = layersOf(run).map((l) => h('tr', null,
    h('th', { scope: 'row' }, layerJump(run, l.name)),
    h('td', { class: 'num' }, layerDims(l)),
    h('td', null, l.status !== undefined ? statusBadge(l.status) : '—'),
    h('td', { class: 'num' }, orDash(l.step)),
    h('td', { class: 'num' }, orDash(l.calibrated_rho, fmtRho)),
    h('td', { class: 'num' }, orDash(l.factor_version)),
    h('td', { class: 'num' }, orDash(l.factor_tokens, fmtInt)),
    h('td', { class: 'num' }, l.spectrum_g ? `${fmt(l.spectrum_g.count50)} / ${fmt(l.spectrum_g.count90)} / ${fmt(l.spectrum_g.count99)}` : '—'),
    h('td', { class: 'num' }, l.spectrum_a ? `${fmt(l.spectrum_a.count50)} / ${fmt(l.spectrum_a.count90)} / ${fmt(l.spectrum_a.count99)}` : '—'),
    h('td', { class: 'num' }, timeEl(l.last_refresh_ms, true))));
  return table('Watched layers', ['Layer', { label: 'd_in → d_out', cls: 'num' }, 'Status', { label: 'Step', cls: 'num' },
    { label: 'Calib. ρ', cls: 'num' }, { label: 'Factors v', cls: 'num' }, { label: 'Tokens', cls: 'num' },
    { label: 'G mass 50/90/99%', cls: 'num', title: 'eigenvalues of G holding 50, 90, 99% of the mass' },
    { label: 'A mass 50/90/99%', cls: 'num', title: 'eigenvalues of A holding 50, 90, 99% of the mass' }, { label: 'Refreshed', cls: 'num' }],
    rows, { class: 'layer-table', hideCaption: true });
}

function layerCard(l) {
  const firing = state.alerts.filter((a) => a && a.layer === l.name && a.status === 'FIRING');
  return h('section', { class: 'layer panel', id: `layer-${l.name}`, tabindex: -1, dataset: { layer: l.name }, 'aria-label': `Layer ${l.name}` },
    h('h3', null, l.name, ' ', h('span', { class: 'dim' }, layerDims(l)), ' ',
      l.status !== undefined ? statusBadge(l.status) : null,
      firing.length ? [' ', badge(`${firing.length} firing`, 'sev-critical')] : null),
    l.last_failure ? h('p', { class: 'failure' }, 'Last failed refresh: ', String(l.last_failure)) : null,
    layerNotes(l),
    h('div', { class: 'charts' },
      h('figure', null, gapChart(l.name)),
      h('figure', null, rhoChart(l.name)),
      h('figure', null, driftChart(l.name)),
      topExamples(l),
      spectrumCharts(l).map((c) => h('figure', null, c))));
}

/** Dead letters, an invalid calibration, a ρ stuck at a grid edge and candidate pacing: what the charts cannot say. */
function layerNotes(l) {
  const dl = l.dead_letters;
  const notes = [];
  if (dl && Number(dl.total) > 0) {
    const reasons = Object.entries(dl.by_reason ?? {}).map(([code, n]) => `${code} ${fmtInt(n)}`).join(', ');
    notes.push(h('div', { class: 'failure dead-letters', dataset: { layer: l.name } },
      h('strong', null, `${fmtInt(dl.total)} dead letter(s)`), ` (${reasons})`,
      known(l.factor_version) ? '' : ': why this layer has no factors', h('br'),
      'Latest', dl.last_topic ? ` from ${dl.last_topic}` : '', ' ', timeEl(dl.last_ms), ': ', String(dl.last_reason ?? '')));
  }
  if (l.calibration_valid === false && l.calibration_problem) {
    notes.push(h('p', { class: 'failure calibration-invalid' }, String(l.calibration_problem)));
  }
  if (l.warning) notes.push(h('p', { class: 'warning' }, 'Warning: ', String(l.warning)));
  if (l.candidate_paced) notes.push(h('p', { class: 'dim' }, 'Next candidate: ', String(l.candidate_paced)));
  return notes;
}

function renderSnapshots() {
  if (state.snapshots.length === 0) return h('p', { class: 'empty' }, 'No edited snapshots yet.');
  return h('ul', { class: 'snapshots' }, state.snapshots.map((sn) => {
    if (sn.status === 'FAILED') {
      // an edit request the service could not serve: nothing to download, the reason instead
      return h('li', { class: 'snapshot failed', dataset: { snapshotId: sn.snapshot_id } },
        h('div', { class: 'snap-head' }, statusBadge('FAILED'), ' ', h('code', null, String(sn.idempotency_key ?? ''))),
        h('div', { class: 'failure' }, String(sn.reason ?? '')),
        h('div', { class: 'snap-meta' }, timeEl(sn.created_ms), h('span', { class: 'dim' }, ` · ${String(sn.snapshot_id ?? '')}`)));
    }
    const path = safeApiPath(sn.download) ?? `/api/snapshots/${enc(String(sn.snapshot_id))}/file`;
    const sha = String(sn.sha256 ?? '');
    const link = h('a', { href: path, class: 'download', dataset: { snapshotId: sn.snapshot_id } }, 'Download',
      h('span', { class: 'sr-only' }, ` snapshot ${sn.snapshot_id}`));
    link.addEventListener('click', (ev) => { ev.preventDefault(); download(path, `${sn.snapshot_id}.safetensors`, link); });
    const layers = Array.isArray(sn.layers) ? sn.layers : [];
    return h('li', { class: 'snapshot', dataset: { snapshotId: sn.snapshot_id } },
      h('div', { class: 'snap-head' }, h('strong', null, `step ${fmt(sn.step)}`), ' ',
        layers.map((lr, i) => [i ? ', ' : '', h('code', null, String(lr.layer ?? '')), ` ρ ${fmtRho(lr.rho)}`]),
        h('span', { class: 'snap-link' }, link)),
      h('div', { class: 'snap-meta' },
        'sha256 ', h('code', { class: 'sha', title: sha }, sha.slice(0, 12)), ' · ', fmtBytes(sn.size_bytes), ' · ', timeEl(sn.created_ms),
        h('span', { class: 'dim' }, ` · ${String(sn.snapshot_id ?? '')}`)));
  }));
}

async function download(path, filename, link) {
  const msg = els.snapshotMsg;
  if (!token()) { mount(msg, 'Type the API token at the top of the page first: downloads need it.'); return; }
  mount(msg, 'Downloading…');
  try {
    const r = await fetch(path, { headers: authHeaders() });
    if (!r.ok) { mount(msg, `${r.status}: ${await errorText(r)}`); return; }
    const url = URL.createObjectURL(await r.blob());
    const a = h('a', { href: url, download: filename.replace(/[^A-Za-z0-9._-]/g, '_') });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    mount(msg, `Downloaded ${filename}.`);
  } catch (e) {
    mount(msg, `Download failed: ${e.message}`);
  }
  link.focus();
}

// ---------------------------------------------------------------- edit form

let editKey = null;

function newKey() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return `dashboard-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

function buildEditForm() {
  const result = h('p', { id: 'edit-result', class: 'form-result', role: 'status', 'aria-live': 'polite' });
  const layersBox = h('div', { class: 'edit-layers' });
  const reason = h('textarea', { id: 'edit-reason', name: 'reason', rows: 2, maxlength: 500, required: true,
    placeholder: 'why (kept with the snapshot)' });
  const submit = h('button', { type: 'submit', id: 'edit-submit' }, 'Request edit');
  const form = h('form', { id: 'edit-form', novalidate: true, 'aria-describedby': 'edit-help' },
    h('p', { id: 'edit-help', class: 'help' }, 'Leave ρ empty to use the layer\u2019s latest calibrated ρ. Needs the API token (top right).'),
    h('fieldset', null, h('legend', null, 'Layers and ρ'), layersBox),
    h('label', { for: 'edit-reason' }, 'Reason'), reason,
    h('div', { class: 'form-row' }, submit), result);
  form.addEventListener('input', () => { editKey = null; });
  form.addEventListener('submit', (ev) => { ev.preventDefault(); submitEdit(form, result, submit); });
  els.editForm = form;
  els.editLayers = layersBox;
  return form;
}

function syncEditLayers() {
  const box = els.editLayers;
  if (!box || !state.run) return;
  const layers = layersOf(state.run);
  const have = [...box.querySelectorAll('.edit-layer')].map((r) => r.dataset.layer);
  if (have.length !== layers.length || have.some((n, i) => n !== layers[i].name)) {
    mount(box, layers.map((l, i) => {
      const cb = h('input', { type: 'checkbox', id: `edit-l${i}`, name: 'layer', value: l.name, checked: true });
      const rho = h('input', { type: 'number', id: `edit-rho${i}`, name: 'rho', min: '0.000001', max: '1', step: 'any', inputmode: 'decimal' });
      cb.addEventListener('change', () => { rho.disabled = !cb.checked; });
      return h('div', { class: 'edit-layer', dataset: { layer: l.name } },
        cb, h('label', { for: `edit-l${i}` }, h('code', null, l.name), ' ', h('span', { class: 'cal dim' })),
        h('label', { for: `edit-rho${i}`, class: 'rho-label' }, 'ρ'), rho);
    }));
    if (layers.length === 0) mount(box, h('p', { class: 'empty' }, 'This run watches no layer.'));
  }
  box.querySelectorAll('.edit-layer').forEach((row) => {
    const l = layers.find((x) => x.name === row.dataset.layer);
    const has = l && known(l.calibrated_rho);
    row.querySelector('input[type=number]').placeholder = 'calibrated';
    mount(row.querySelector('.cal'), has ? `calibrated ${fmtRho(l.calibrated_rho)}` : 'not calibrated yet');
  });
}

async function submitEdit(form, result, submit) {
  const run = state.run;
  if (!run) return;
  const rows = [...form.querySelectorAll('.edit-layer')];
  const chosen = rows.filter((r) => r.querySelector('input[type=checkbox]').checked);
  const say = (text, cls) => { result.className = `form-result ${cls}`; mount(result, text); };
  if (chosen.length === 0) { say('Choose at least one layer.', 'error'); return; }
  const layers = [];
  for (const r of chosen) {
    const input = r.querySelector('input[type=number]');
    const raw = input.value.trim();
    if (raw === '') { layers.push({ layer: r.dataset.layer, rho: 0 }); continue; }
    const v = Number(raw);
    if (!(v > 0 && v <= 1)) { say(`ρ for ${r.dataset.layer} must be in (0, 1].`, 'error'); input.focus(); return; }
    layers.push({ layer: r.dataset.layer, rho: v });
  }
  const reason = form.querySelector('#edit-reason').value.trim();
  if (!reason) { say('Give a reason: it is kept with the snapshot.', 'error'); form.querySelector('#edit-reason').focus(); return; }
  if (!token()) { say('Type the API token at the top of the page first.', 'error'); els.token.focus(); return; }
  const allCalibrated = chosen.length === rows.length && layers.every((l) => l.rho === 0);
  if (!editKey) editKey = newKey();
  const body = { reason, idempotency_key: editKey };
  if (!allCalibrated) body.layers = layers; // omitted: every watched layer at its calibrated ρ
  submit.disabled = true;
  say('Sending…', 'pending');
  try {
    const r = await fetch(`/api/runs/${enc(run.run_id)}/edits`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders() }, body: JSON.stringify(body),
    });
    if (r.status === 202 || r.ok) {
      let key = editKey;
      try { const b = await r.json(); if (b && b.idempotency_key) key = b.idempotency_key; } catch { /* empty body */ }
      say(`Edit request accepted (key ${key}). The snapshot appears below once it is written.`, 'ok');
      editKey = null;
    } else if (r.status === 401) {
      say(`401 Unauthorized: the service did not accept this token (${await errorText(r)}). Check the token at the top.`, 'error');
    } else if (r.status === 403) {
      say(`403 Forbidden: ${await errorText(r)}. Edits are disabled until the service has a token configured.`, 'error');
    } else {
      say(`${r.status}: ${await errorText(r)}`, 'error');
    }
  } catch (e) {
    say(e instanceof TypeError && /header/i.test(e.message) ? 'The token contains characters an HTTP header cannot carry.'
      : `Could not reach the service: ${e.message}`, 'error');
  } finally {
    submit.disabled = false;
  }
}

async function requestRefresh(button, msg) {
  const run = state.run;
  if (!run) return;
  if (!token()) { mount(msg, 'Type the API token at the top of the page first.'); return; }
  button.disabled = true;
  try {
    const r = await fetch(`/api/runs/${enc(run.run_id)}/refresh`, { method: 'POST', headers: authHeaders() });
    mount(msg, r.ok ? 'Refresh requested: every layer refreshes at the next opportunity.' : `${r.status}: ${await errorText(r)}`);
  } catch (e) {
    mount(msg, `Could not reach the service: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function buildRunSkeleton(runId) {
  els.runHeader = h('div', { class: 'run-header' });
  els.layerTable = h('div', { class: 'table-wrap' });
  els.layers = h('div', { class: 'layers' });
  els.alertsBox = h('div');
  els.snapshotsBox = h('div');
  els.guardBox = h('div');
  els.snapshotMsg = h('p', { class: 'form-result', role: 'status', 'aria-live': 'polite' });
  const refreshMsg = h('p', { class: 'form-result', role: 'status', 'aria-live': 'polite' });
  const refreshBtn = h('button', { type: 'button', class: 'secondary' }, 'Refresh curvature now');
  refreshBtn.addEventListener('click', () => requestRefresh(refreshBtn, refreshMsg));
  mount(els.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, '← All runs'), ' / ', h('span', null, runId)),
    els.runHeader,
    section('layers', 'Layers', els.layerTable),
    h('div', { class: 'run-grid' },
      h('div', { class: 'run-main' }, els.layers),
      h('aside', { class: 'run-side' },
        section('alerts', 'Alerts', els.alertsBox),
        section('edit', 'Request an edit', buildEditForm(), h('div', { class: 'form-row' }, refreshBtn), refreshMsg),
        section('snapshots', 'Edited snapshots', els.snapshotsBox, els.snapshotMsg),
        section('guard', 'Guard decisions', els.guardBox))));
}

/** The live guard's decisions, newest first: what it did with each alert and snapshot, and why. */
function renderGuard() {
  if (state.guard.length === 0) return h('p', { class: 'empty' }, 'No guard decisions yet.');
  return h('ol', { class: 'guard' }, state.guard.slice(0, 100).map((d) => h('li', { class: `guard-${String(d.action).toLowerCase()}` },
    badge(String(d.action), d.action === 'EXHAUSTED' || d.action === 'HARMFUL' ? 'sev-critical'
      : d.action === 'EDIT' || d.action === 'ESCALATE' || d.action === 'NOT_APPLIED' ? 'sev-warning' : 'sev-info'),
    ' ', h('span', { class: 'guard-where' }, `step ${d.step}${d.layer ? ` · ${d.layer}` : ''} · ${String(d.source).split(':')[0]}`),
    h('div', { class: 'guard-reason' }, String(d.reason ?? '')))));
}

function renderRun() {
  if (!els.runHeader) return;
  const run = state.run;
  if (!run) {
    mount(els.runHeader, h('p', { class: 'notice' }, state.loadError || 'Loading…'));
    return;
  }
  const firing = state.alerts.filter((a) => a && a.status === 'FIRING');
  mount(els.runHeader,
    h('h2', { class: 'run-title' }, h('span', { class: 'run-id' }, String(run.run_id)), ' ', statusBadge(run.status)),
    h('dl', { class: 'facts' },
      h('div', null, h('dt', null, 'Model'), h('dd', { class: 'model' }, run.model ?? '')),
      h('div', null, h('dt', null, 'Source'), h('dd', null, run.source ?? '')),
      h('div', null, h('dt', null, 'Last step'), h('dd', null, orDash(run.last_step))),
      h('div', null, h('dt', null, 'Layers'), h('dd', null, String(layersOf(run).length))),
      h('div', null, h('dt', null, 'Firing alerts'), h('dd', null, firing.length ? badge(String(firing.length), 'sev-critical') : '0')),
      h('div', null, h('dt', null, 'Created'), h('dd', null, timeEl(run.created_ms))),
      run.fisher ? h('div', null, h('dt', null, 'Fisher'), h('dd', null, String(run.fisher))) : null,
      run.factor_mode ? h('div', null, h('dt', null, 'Factors'), h('dd', null, String(run.factor_mode))) : null),
    run.config && typeof run.config === 'object' && Object.keys(run.config).length
      ? h('details', { class: 'run-config' }, h('summary', null, `Run configuration (${Object.keys(run.config).length})`),
        h('dl', { class: 'kv' }, Object.entries(run.config).map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))])))
      : null);
  mount(els.layerTable, layerSummary(run));
  mount(els.layers, layersOf(run).map(layerCard));
  mount(els.alertsBox, renderAlerts(state.alerts, false));
  mount(els.snapshotsBox, renderSnapshots());
  mount(els.guardBox, renderGuard());
  syncEditLayers();
}

// ---------------------------------------------------------------- routing and frame

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (state.route.view === 'run') renderRun(); else renderOverview();
    document.body.dataset.view = state.route.view;
  });
}

function parseRoute() {
  const m = /^#\/runs\/(.+)$/.exec(location.hash);
  if (m) {
    try { return { view: 'run', runId: decodeURIComponent(m[1]) }; } catch { /* bad escape */ }
  }
  return { view: 'runs' };
}

async function navigate() {
  if (location.hash && !location.hash.startsWith('#/')) return; // in-page anchors (skip link)
  viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  state.route = parseRoute();
  state.run = null;
  state.loadError = null;
  state.alerts = [];
  state.signals = new Map();
  state.scores = new Map();
  state.spectra = new Map();
  state.snapshots = [];
  state.guard = [];
  els.runHeader = null;
  if (state.route.view === 'run') {
    document.title = `${state.route.runId} · Curvewatch`;
    buildRunSkeleton(state.route.runId);
    renderRun();
  } else {
    document.title = 'Curvewatch';
    mount(els.main, h('p', { class: 'notice' }, 'Loading…'));
  }
  startFeed();
  try {
    await reloadView();
    document.body.dataset.loaded = 'true';
  } catch (e) {
    if (signal.aborted) return;
    mount(els.notice, `Could not load from the service: ${e.message}. Retrying while the connection indicator is not “Live”.`);
    els.notice.hidden = false;
    return;
  }
  els.notice.hidden = true;
}

function initToken() {
  const input = els.token;
  input.value = token();
  input.addEventListener('input', () => {
    try {
      if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage disabled: the token lives for this page only */ }
  });
  // a page that was refused for want of a token reloads with the one typed (reads and the live feed carry it)
  input.addEventListener('change', () => {
    if (document.body.dataset.needsToken === 'true' && input.value.trim()) {
      delete document.body.dataset.needsToken;
      navigate();
    }
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    input.value = '';
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
    input.focus();
  });
  document.getElementById('token-form').addEventListener('submit', (ev) => ev.preventDefault());
}

function init() {
  els.main = document.getElementById('main');
  els.conn = document.getElementById('conn');
  els.connLabel = els.conn.querySelector('.label');
  els.notice = document.getElementById('notice');
  els.token = document.getElementById('token');
  initToken();
  window.addEventListener('hashchange', navigate);
  navigate();
}

init();
