#!/usr/bin/env node
// A throwaway stand-in for the Vert.x service: serves the dashboard folder and canned JSON/SSE
// shaped like docs/SERVICE-CONTRACT.md §5, so the dashboard and its browser test can be developed
// without the JVM. The real test (DashboardBrowserIT) runs dashboard.spec.mjs against the real
// service; this server only exists for development and for `node run-against-fixture.mjs`.
//
//   node fixture-server.mjs [--port 8099] [--token fixture-token] [--no-sse] [--demo]
//
// --no-sse   /api/events answers 503 (exercises the dashboard's polling fallback)
// --demo     publishes a new memorization_gap point every 3 s (to watch live updates by hand)
// Test hooks (not part of the service contract):
//   POST /__fixture/alert   publish a new alert (body: optional partial alert JSON) -> {id}
//   POST /__fixture/signal  publish the next memorization_gap point of the first run's last layer
//   POST /__fixture/drop-sse?for_ms=N  end every event stream and refuse new ones (503) for N ms
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DASHBOARD = path.resolve(here, '../../main/resources/dashboard');
const HOSTILE = '<img src=x onerror=window.__xss=1>';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const PORT = Number(opt('--port', '8099'));
const TOKEN = opt('--token', 'fixture-token');
const NO_SSE = args.includes('--no-sse');
const DEMO = args.includes('--demo');

// ------------------------------------------------------------------ canned data (deterministic)
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(7);
const T0 = Date.now() - 3600_000;
const RUN = 'noisy-mlp-7';
const EVIL_RUN = `evil-${HOSTILE}`;

const runs = [
  { run_id: RUN, model: 'mlp-512 (10% flipped labels)', source: 'djl-trainer', status: 'RUNNING', created_ms: T0, last_step: 420,
    layers: [{ name: 'fc1', d_in: 64, d_out: 512 }, { name: 'fc2', d_in: 4096, d_out: 512 }] },
  { run_id: EVIL_RUN, model: HOSTILE, source: `pytorch-client ${HOSTILE}`, status: 'FINISHED', created_ms: T0 - 86400_000, last_step: 40,
    layers: [{ name: `fc${HOSTILE}`, d_in: 8, d_out: 8 }] },
];

const signals = new Map(); // run -> layer -> name -> points
function addPoint(run, layer, name, step, value, extra = {}) {
  if (!signals.has(run)) signals.set(run, new Map());
  const byLayer = signals.get(run);
  if (!byLayer.has(layer)) byLayer.set(layer, new Map());
  const byName = byLayer.get(layer);
  if (!byName.has(name)) byName.set(name, []);
  const p = { step, value, factor_version: step / 20, timestamp_ms: T0 + step * 8000, attributes: extra };
  byName.get(name).push(p);
  return p;
}
for (const [li, layer] of ['fc1', 'fc2'].entries()) {
  for (let step = 20; step <= 420; step += 20) {
    const onset = layer === 'fc2' ? 220 : 300;
    const gap = 0.004 + 0.02 * rand() + (step >= onset ? 0.55 * (1 - Math.exp(-(step - onset) / 70)) * (layer === 'fc2' ? 1 : 0.45) : 0);
    addPoint(RUN, layer, 'memorization_gap', step, Number(gap.toFixed(4)));
    const oneMinus = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4][Math.min(6, Math.floor((step + li * 40) / 70))];
    addPoint(RUN, layer, 'calibrated_rho', step, 1 - oneMinus);
    if (step > 20) {
      addPoint(RUN, layer, 'basis_drift_g', step, Number((0.3 * Math.exp(-step / 120) + 0.004 * rand()).toFixed(5)));
      addPoint(RUN, layer, 'basis_drift_a', step, Number((0.12 * Math.exp(-step / 90) + 0.002 * rand()).toFixed(5)));
    }
    addPoint(RUN, layer, 'effective_rank_g', step, 40 + step / 10);
  }
}
addPoint(EVIL_RUN, `fc${HOSTILE}`, 'memorization_gap', 20, 0.01);
addPoint(EVIL_RUN, `fc${HOSTILE}`, 'memorization_gap', 40, 0.02);

function examples(n, seed, hostileAt = -1) {
  const r = rng(seed);
  const out = [];
  let score = 2.4;
  for (let i = 0; i < n; i++) {
    score *= 0.82 + 0.1 * r();
    out.push({ sample_id: i === hostileAt ? HOSTILE : `train-${String(Math.floor(r() * 60000)).padStart(5, '0')}`, score: Number(score.toFixed(4)) });
  }
  return out;
}

function layerDetail(run, l, i) {
  if (run.run_id !== RUN) return { ...l, factor_version: -1, refreshed_version: -1, step: -1, calibrated_rho: null, status: 'refresh failed: <b>not</b> enough tokens', last_failure: HOSTILE };
  return {
    ...l, factor_version: 21, factor_tokens: 430080 + i * 1000, step: 420, calibrated_rho: i === 0 ? 0.999 : 0.9999, status: 'READY',
    last_refresh_ms: T0 + 420 * 8000,
    calibration_valid: i === 0 ? false : true,
    calibration_problem: i === 0 ? 'calibration invalid at v21: constant probe loss: no candidate moved it' : null,
    warning: i === 1 ? "rho at the grid's most aggressive end for 3 calibrations in a row" : null,
    dead_letters: i === 0
      ? { total: 1560, by_reason: { KEY_MISMATCH: 1560 }, by_topic: { captures: 1560 }, last_reason_code: 'KEY_MISMATCH',
        last_reason: `KEY_MISMATCH: key belongs to partition 2 of 4, found in partition 1 ${HOSTILE}`, last_topic: 'captures',
        last_component: 'worker:w1', last_ms: T0 + 400 * 8000 }
      : { total: 0, by_reason: {}, by_topic: {}, last_reason_code: null, last_reason: null, last_topic: null, last_component: null, last_ms: null },
    spectrum_g: { count50: 3 + i, count90: 41 + i * 9, count99: 170 + i * 40, effective_rank: 58.2 + i, total: 12.5 },
    spectrum_a: { count50: 2, count90: 19 + i * 30, count99: 44 + i * 120, effective_rank: 11.3 + i * 20, total: 3.1 },
  };
}

const alerts = [
  { id: 'a-3', fingerprint: 'f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7', run_id: RUN, step: 260, layer: 'fc2', rule: 'gap-high', signal: 'memorization_gap',
    value: 0.31, threshold: 0.25, severity: 'WARNING', status: 'FIRING', first_seen_ms: T0 + 260 * 8000, last_seen_ms: T0 + 420 * 8000,
    summary: 'memorization gap 0.31 > 0.25 on fc2', top_examples: examples(10, 3, 2), details: { window_mean: '0.012', window_sd: '0.006', rho: '0.9999' } },
  { id: 'a-2', fingerprint: '0a1b2c3d4e5f60718293a4b5c6d7e8f9', run_id: RUN, step: 240, layer: 'fc2', rule: 'gap-jump', signal: 'memorization_gap',
    value: 0.21, threshold: 0.09, severity: 'CRITICAL', status: 'FIRING', first_seen_ms: T0 + 240 * 8000, last_seen_ms: T0 + 400 * 8000,
    summary: HOSTILE, top_examples: examples(10, 4), details: { note: HOSTILE } },
  { id: 'a-1', fingerprint: '99887766554433221100ffeeddccbbaa', run_id: RUN, step: 120, layer: 'fc1', rule: 'gap-high', signal: 'memorization_gap',
    value: 0.26, threshold: 0.25, severity: 'WARNING', status: 'RESOLVED', first_seen_ms: T0 + 100 * 8000, last_seen_ms: T0 + 140 * 8000,
    summary: 'memorization gap back under 0.25 on fc1', top_examples: [], details: {} },
  { id: 'e-1', fingerprint: 'deadbeefdeadbeefdeadbeefdeadbeef', run_id: EVIL_RUN, step: 40, layer: `fc${HOSTILE}`, rule: HOSTILE, signal: 'memorization_gap',
    value: 0.9, threshold: 0.25, severity: 'INFO', status: 'RESOLVED', first_seen_ms: T0, last_seen_ms: T0 + 1000,
    summary: HOSTILE, top_examples: examples(3, 9, 0), details: { [HOSTILE]: HOSTILE } },
];

const snapshotBytes = Buffer.from('{"fc2.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}    \0\0\x80?');
const snapshots = new Map([[RUN, [
  { snapshot_id: 'snap-0001', step: 300, idempotency_key: 'rule:gap-critical:run', sha256: crypto.createHash('sha256').update(snapshotBytes).digest('hex'),
    size_bytes: snapshotBytes.length, layers: [{ layer: 'fc2', rho: 0.9999 }], factor_versions: { fc2: 15 }, created_ms: T0 + 2500 * 1000,
    download: '/api/snapshots/snap-0001/file', status: 'WRITTEN', reason: '' },
  { snapshot_id: 'snap-0002', step: -1, idempotency_key: 'rule:gap-high:fc1', sha256: '', size_bytes: 0, layers: [{ layer: 'fc1', rho: 0 }],
    factor_versions: {}, created_ms: T0 + 2400 * 1000, download: null, status: 'FAILED',
    reason: `NOT_READY: layer 'fc1' has no calibrated rho ${HOSTILE}` },
]], [EVIL_RUN, [
  { snapshot_id: 'snap-evil', step: 40, idempotency_key: HOSTILE, sha256: HOSTILE, size_bytes: 10, layers: [{ layer: HOSTILE, rho: 0.5 }],
    factor_versions: {}, created_ms: T0, download: 'javascript:window.__xss=1' },
]]]);

function spectrum(n, decay, scale) {
  return Array.from({ length: n }, (_, i) => Number((scale * Math.pow(i + 1, -decay) * (0.9 + 0.2 * rand())).toPrecision(5)));
}
/** Like the service's Json.spectrumIndices: every index below h, then geometric ones up to n - 1. */
function logIndices(n, max) {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  let h = 1;
  let ratio = 0;
  for (; h < max - 1; h++) { ratio = Math.pow((n - 1) / h, 1 / (max - h - 1)); if (h * (ratio - 1) >= 1) break; }
  const out = Array.from({ length: h }, (_, i) => i);
  for (let k = 0; k < max - h; k++) out.push(Math.min(n - 1, Math.round(h * Math.pow(ratio, k))));
  return [...new Set(out)];
}
function sampled(n, decay, scale) {
  const idx = logIndices(n, 512);
  return { values: idx.map((i) => Number((scale * Math.pow(i + 1, -decay) * (0.9 + 0.2 * rand())).toPrecision(5))), idx, n };
}
const fc2a = sampled(4096, 1.3, 1.4);
const spectra = new Map([
  ['fc1', { g: spectrum(512, 1.6, 3.2), g_size: 512, a: spectrum(64, 1.1, 0.9), a_size: 64 }],
  ['fc2', { g: spectrum(512, 1.9, 5.0), g_size: 512, a: fc2a.values, a_index: fc2a.idx, a_size: fc2a.n }],
]);

// ------------------------------------------------------------------ HTTP
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.md': 'text/markdown; charset=utf-8', '.json': 'application/json' };
const sseClients = new Set();

function json(res, status, body) {
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': b.length, 'Cache-Control': 'no-store' });
  res.end(b);
}
const fail = (res, status, error) => json(res, status, { error });

function authorized(req) {
  const h = req.headers.authorization || '';
  const m = /^Bearer (.+)$/.exec(h);
  if (!m) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(TOKEN);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function readBody(req, limit = 65536) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => { n += c.length; if (n > limit) { reject(Object.assign(new Error('too large'), { status: 413 })); req.destroy(); } else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function broadcast(type, data) {
  const runId = data.run_id;
  for (const c of sseClients) {
    if (c.run && runId !== undefined && c.run !== runId) continue;
    c.res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }
}

function serveStatic(res, rel) {
  const file = path.resolve(DASHBOARD, rel || 'index.html');
  if (!file.startsWith(DASHBOARD + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) return fail(res, 404, 'not found');
  // the service's security headers (Access.java), so the spec's header check holds here too
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff', 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
      + "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" });
  fs.createReadStream(file).pipe(res);
}

function runDetail(run) {
  const firing = alerts.filter((a) => a.run_id === run.run_id && a.status === 'FIRING').length;
  return { ...run, firing_alerts: firing, fisher: 'SAMPLED', factor_mode: 'CUMULATIVE',
    config: run.run_id === RUN ? { lr: '0.05', dataset: 'noisy-labels seed 1', flipped: '10%' } : { [HOSTILE]: HOSTILE },
    layers: run.layers.map((l, i) => layerDetail(run, l, i)) };
}

let nextAlert = 1;
let sseDownUntil = 0;
let demoStep = 420;

async function handle(req, res) {
  const url = new URL(req.url, 'http://fixture');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const q = url.searchParams;
  if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/dashboard' || url.pathname === '/dashboard/')) return serveStatic(res, 'index.html');
  if (req.method === 'GET' && parts[0] === 'dashboard') return serveStatic(res, parts.slice(1).join('/'));
  if (req.method === 'GET' && parts.length === 1 && parts[0] !== 'api' && !parts[0].startsWith('__')) {
    if (parts[0] === 'health') return json(res, 200, { status: 'UP', checks: { fixture: 'UP' } });
    return serveStatic(res, parts[0]);
  }
  if (parts[0] === '__fixture' && req.method === 'POST') {
    const body = await readBody(req);
    if (parts[1] === 'alert') {
      const extra = body ? JSON.parse(body) : {};
      const n = nextAlert++;
      const a = { id: `live-${n}`, fingerprint: crypto.createHash('sha256').update(`live|${n}`).digest('hex').slice(0, 32), run_id: RUN, step: 440,
        layer: 'fc1', rule: 'gap-jump', signal: 'memorization_gap', value: 0.42, threshold: 0.12, severity: 'CRITICAL', status: 'FIRING',
        first_seen_ms: Date.now(), last_seen_ms: Date.now(), summary: `live alert ${n}: gap jumped on fc1`, top_examples: examples(5, 11 + n), details: {}, ...extra };
      alerts.unshift(a);
      broadcast('alert', a);
      return json(res, 200, { id: a.id });
    }
    if (parts[1] === 'drop-sse') {
      sseDownUntil = Date.now() + Number(q.get('for_ms') || 0);
      const n = sseClients.size;
      for (const c of sseClients) c.res.end();
      sseClients.clear();
      return json(res, 200, { dropped: n });
    }
    if (parts[1] === 'signal') {
      demoStep += 20;
      const p = addPoint(RUN, 'fc2', 'memorization_gap', demoStep, Number((0.5 + 0.05 * rand()).toFixed(4)));
      broadcast('signal', { run_id: RUN, layer: 'fc2', name: 'memorization_gap', ...p });
      return json(res, 200, { step: demoStep });
    }
    return fail(res, 404, 'unknown fixture hook');
  }
  if (parts[0] !== 'api') return fail(res, 404, 'not found');

  if (req.method === 'GET' && parts[1] === 'events') {
    if (NO_SSE) return fail(res, 503, 'event stream disabled (--no-sse)');
    if (Date.now() < sseDownUntil) return fail(res, 503, 'event stream down for a while (/__fixture/drop-sse)');
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.write(': connected\n\n');
    const client = { res, run: q.get('run') || null };
    sseClients.add(client);
    const ping = setInterval(() => res.write(': ping\n\n'), 15000);
    req.on('close', () => { clearInterval(ping); sseClients.delete(client); });
    return undefined;
  }
  if (req.method === 'GET' && parts[1] === 'runs' && parts.length === 2) return json(res, 200, runs.map((r) => {
    const d = runDetail(r);
    return { ...d, layers: r.layers };
  }));
  if (req.method === 'GET' && parts[1] === 'alerts' && parts.length === 2) {
    const limit = Math.min(1000, Number(q.get('limit') || 100));
    return json(res, 200, alerts.filter((a) => (!q.get('run') || a.run_id === q.get('run')) && (!q.get('status') || a.status === q.get('status'))).slice(0, limit));
  }
  if (req.method === 'GET' && parts[1] === 'snapshots' && parts[3] === 'file' && parts.length === 4) {
    if (!authorized(req)) return fail(res, 401, 'missing or wrong bearer token');
    if (parts[2] !== 'snap-0001') return fail(res, 404, 'unknown snapshot');
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': snapshotBytes.length });
    return res.end(snapshotBytes);
  }
  if (parts[1] === 'runs' && parts.length >= 3) {
    const run = runs.find((r) => r.run_id === parts[2]);
    if (!run) return fail(res, 404, `unknown run ${parts[2]}`);
    const sub = parts[3];
    if (req.method === 'GET' && sub === undefined) return json(res, 200, runDetail(run));
    if (req.method === 'GET' && sub === 'signals') {
      const limit = Math.min(5000, Number(q.get('limit') || 500));
      const since = Number(q.get('since_step') || -Infinity);
      const series = [];
      for (const [layer, byName] of signals.get(run.run_id) || []) {
        if (q.get('layer') && q.get('layer') !== layer) continue;
        for (const [name, pts] of byName) {
          if (q.get('name') && q.get('name') !== name) continue;
          series.push({ layer, name, points: pts.filter((p) => p.step >= since).slice(-limit) });
        }
      }
      return json(res, 200, { run_id: run.run_id, series });
    }
    if (req.method === 'GET' && sub === 'scores') {
      const layer = q.get('layer');
      if (!run.layers.some((l) => l.name === layer)) return fail(res, 404, `unknown layer ${layer}`);
      if (run.run_id !== RUN) return json(res, 200, { run_id: run.run_id, layer, kind: 'EXACT', step: 40, rho: 0.5, top: examples(3, 21, 1) });
      const top = Math.min(200, Number(q.get('top') || 20));
      return json(res, 200, { run_id: run.run_id, layer, kind: q.get('kind') || 'EXACT', step: 420, rho: layer === 'fc1' ? 0.999 : 0.9999,
        top: examples(top, layer === 'fc1' ? 5 : 6, layer === 'fc2' ? 4 : -1) });
    }
    if (req.method === 'GET' && sub === 'spectra') {
      const sp = run.run_id === RUN ? spectra.get(q.get('layer')) : null;
      if (!sp) return fail(res, 404, `no spectra for layer ${q.get('layer')}`);
      return json(res, 200, { layer: q.get('layer'), step: 420, factor_version: 21, ...sp });
    }
    if (req.method === 'GET' && sub === 'snapshots') return json(res, 200, snapshots.get(run.run_id) || []);
    if (req.method === 'POST' && (sub === 'edits' || sub === 'refresh')) {
      if (!authorized(req)) return fail(res, 401, 'missing or wrong bearer token');
      if (sub === 'refresh') return json(res, 202, { status: 'accepted' });
      if (!String(req.headers['content-type'] || '').startsWith('application/json')) return fail(res, 415, 'body must be JSON');
      let body;
      try { body = JSON.parse(await readBody(req)); } catch (e) { return fail(res, e.status || 400, e.status ? 'body over 64 KiB' : 'bad JSON'); }
      for (const l of body.layers || []) {
        if (!run.layers.some((x) => x.name === l.layer)) return fail(res, 404, `unknown layer ${l.layer}`);
        if (typeof l.rho !== 'number' || l.rho > 1) return fail(res, 400, `bad rho for ${l.layer}`);
      }
      return json(res, 202, { idempotency_key: body.idempotency_key || crypto.randomUUID(), status: 'accepted' });
    }
  }
  return fail(res, 404, 'not found');
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => { if (!res.headersSent) fail(res, e.status || 500, String(e.message)); else res.end(); });
});
server.listen(PORT, '127.0.0.1', () => {
  console.log(`fixture listening http://127.0.0.1:${server.address().port}/ token=${TOKEN}${NO_SSE ? ' (no SSE)' : ''}`);
});
if (DEMO) {
  setInterval(() => {
    demoStep += 20;
    const p = addPoint(RUN, 'fc2', 'memorization_gap', demoStep, Number((0.5 + 0.05 * rand()).toFixed(4)));
    broadcast('signal', { run_id: RUN, layer: 'fc2', name: 'memorization_gap', ...p });
  }, 3000);
}
const shutdown = () => { for (const c of sseClients) c.res.end(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 500).unref(); };
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
