#!/usr/bin/env node
// Browser test of the Curvewatch dashboard, run by `node`, against the real service
// (DashboardBrowserIT) or the fixture server (run-against-fixture.mjs).
//
//   node dashboard.spec.mjs <base-url> <token> <screenshot.png> [options]
//     --run ID            the seeded run to check (default: the first run of GET /api/runs)
//     --layer NAME        the layer whose gap chart is counted (default: first layer with gap points)
//     --edit-layer NAME   a layer the service can edit now (weight and eigenbasis): the form's edit of it alone must be
//                         accepted (default: --layer); the first edit, of every layer, may be refused with a reason (409)
//     --transport sse|polling   how the live alert is expected to arrive (default sse)
//     --alert-timeout-s N seconds to wait for the live alert (default 60)
//     --live-alert-id ID  the id of the alert the driver will publish (default: any new alert id)
//     --check-download    also download the first snapshot with the token and compare its size
//     --check-reconnect   after the live alert, print WAITING_FOR_STREAM_DROP; the driver ends the
//                         event stream (and may refuse it a while); the indicator must leave and
//                         come back to "live" on its own (backoff), with the polling fallback between
//     --no-hostile        do not require a hostile string (`<...>`) in the seeded data
//
// Protocol with the driver: once the run view is open and live, it prints one line
//   WAITING_FOR_ALERT run=<run id>
// on stdout; the driver then publishes a new alert for that run (a new alert id), and the script
// expects it on the page without a reload, then prints ALERT_SEEN id=<id>. Every check prints "ok - ..."; the first failure prints
// "FAIL: ..." on stderr, writes the screenshot (of the failing state) and exits 1.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CURVEWATCH_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

class CheckError extends Error {}
const fail = (msg) => { throw new CheckError(msg); };
const ok = (msg) => console.log(`ok - ${msg}`);

function parseArgs(argv) {
  const pos = [];
  const o = { liveAlertId: null, transport: 'sse', alertTimeoutS: 60, checkDownload: false, hostile: true, run: null, layer: null, readRequired: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--run') o.run = argv[++i];
    else if (a === '--layer') o.layer = argv[++i];
    else if (a === '--edit-layer') o.editLayer = argv[++i];
    else if (a === '--transport') o.transport = argv[++i];
    else if (a === '--alert-timeout-s') o.alertTimeoutS = Number(argv[++i]);
    else if (a === '--check-download') o.checkDownload = true;
    else if (a === '--check-reconnect') o.checkReconnect = true;
    else if (a === '--live-alert-id') o.liveAlertId = argv[++i];
    else if (a === '--no-hostile') o.hostile = false;
    else if (a === '--read-required') o.readRequired = true;
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 3) usage('expected <base-url> <token> <screenshot.png>');
  if (!['sse', 'polling'].includes(o.transport)) usage('--transport is sse or polling');
  [o.base, o.token, o.png] = pos;
  o.base = o.base.replace(/\/+$/, '');
  return o;
}

function usage(msg) {
  console.error(`dashboard.spec.mjs: ${msg}\nusage: node dashboard.spec.mjs <base-url> <token> <screenshot.png> [--run ID] [--layer NAME] [--edit-layer NAME] [--transport sse|polling] [--alert-timeout-s N] [--live-alert-id ID] [--check-download] [--check-reconnect] [--no-hostile] [--read-required]`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const enc = encodeURIComponent;

async function api(p) {
  // the token reads too: a service with auth.read.required refuses reads without one
  const r = await fetch(opts.base + p, { headers: { Accept: 'application/json', Authorization: `Bearer ${opts.token}` } });
  if (!r.ok) fail(`GET ${p} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

async function loadPlaywright() {
  try {
    return await import(path.join(here, 'node_modules', 'playwright-core', 'index.mjs'));
  } catch (e) {
    console.error(`FAIL: playwright-core is not installed (npm ci --prefix ${here}): ${e.message}`);
    process.exit(1);
  }
}

const sibling = (suffix) => opts.png.replace(/(\.png)?$/i, `${suffix}.png`);

async function main() {
  if (!fs.existsSync(CHROMIUM)) fail(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  const { chromium } = await loadPlaywright();
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'curvewatch-chromium-'));
  let context = null;
  let page = null;
  const consoleErrors = [];
  const expectedErrors = [];
  try {
    // ---------------------------------------------------------------- what the API says
    const runs = await api('/api/runs');
    if (!Array.isArray(runs) || runs.length === 0) fail('GET /api/runs lists no run: nothing was seeded');
    const runId = opts.run ?? runs[0].run_id;
    const run = runs.find((r) => r.run_id === runId);
    if (!run) fail(`run ${JSON.stringify(runId)} is not in GET /api/runs (${runs.map((r) => r.run_id).join(', ')})`);
    const detail = await api(`/api/runs/${enc(runId)}`);
    const allSignals = await api(`/api/runs/${enc(runId)}/signals?name=memorization_gap&limit=5000`);
    const gapSeries = (allSignals.series || []).filter((se) => se.name === 'memorization_gap' && se.points && se.points.length);
    const layer = opts.layer ?? (gapSeries[0] && gapSeries[0].layer);
    if (!layer) fail(`run ${runId} has no memorization_gap points in GET /api/runs/${runId}/signals`);
    const gap = await api(`/api/runs/${enc(runId)}/signals?layer=${enc(layer)}&name=memorization_gap&limit=5000`);
    const gapPoints = ((gap.series || []).find((se) => se.layer === layer && se.name === 'memorization_gap') || { points: [] }).points.length;
    if (gapPoints === 0) fail(`layer ${layer} has no memorization_gap points`);
    const runAlerts = await api(`/api/alerts?run=${enc(runId)}&limit=200`);
    const snapshots = await api(`/api/runs/${enc(runId)}/snapshots`);
    const hostile = [...runs.flatMap((r) => [r.run_id, r.model, r.source]), ...runAlerts.flatMap((a) => [a.summary, a.rule])]
      .filter((v) => typeof v === 'string' && /[<>"']/.test(v));
    if (opts.hostile && hostile.length === 0) fail('the seeded data holds no hostile string (e.g. a model name <img src=x onerror=...>): seed one or pass --no-hostile');
    console.log(`# run ${JSON.stringify(runId)}, layer ${layer}: ${gapPoints} gap points, ${runAlerts.length} alerts, ${snapshots.length} snapshots, ${hostile.length} hostile strings`);

    // ---------------------------------------------------------------- browser
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1366, height: 900 },
      acceptDownloads: true, colorScheme: 'light',
    });
    page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const where = m.location() && m.location().url ? m.location().url : '';
      const entry = `${m.text()}${where ? ` (${where})` : ''}`;
      if (expectedErrors.some((f) => f(m.text(), where))) return;
      consoleErrors.push(entry);
    });
    page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
    // the deliberate wrong-token POST is logged by Chromium as a failed resource
    expectedErrors.push((text, url) => /status of 401/.test(text) && /\/api\/runs\/[^/]+\/edits$/.test(url));
    if (opts.transport === 'polling') expectedErrors.push((text, url) => /\/api\/events/.test(url) || /EventSource/.test(text));

    const waitFor = async (fn, arg, what, timeout = 15000) => {
      try {
        await page.waitForFunction(fn, arg, { timeout, polling: 100 });
      } catch (e) {
        fail(`timed out after ${timeout / 1000} s waiting for: ${what}`);
      }
    };

    // ---------------------------------------------------------------- security headers, and the token a shared service needs
    if (opts.readRequired) {
      // before the token is typed every read is a 401, which Chromium logs as a failed resource
      expectedErrors.push((text, url) => /status of 401/.test(text) && /\/api\//.test(url));
    }
    const first = await page.goto(`${opts.base}/`, { waitUntil: 'domcontentloaded' });
    const hdr = first.headers();
    if (!/frame-ancestors 'none'/.test(hdr['content-security-policy'] || '')) fail(`Content-Security-Policy without frame-ancestors 'none': ${hdr['content-security-policy']}`);
    if (!/script-src 'self'/.test(hdr['content-security-policy'] || '')) fail(`Content-Security-Policy allows foreign scripts: ${hdr['content-security-policy']}`);
    if (hdr['x-content-type-options'] !== 'nosniff') fail(`X-Content-Type-Options is ${hdr['x-content-type-options']}`);
    if (hdr['x-frame-options'] !== 'DENY') fail(`X-Frame-Options is ${hdr['x-frame-options']}`);
    // the frame below is refused on purpose, and Chromium logs the refusal
    expectedErrors.push((text) => /frame-ancestors|X-Frame-Options|Refused to (display|frame)|Framing /i.test(text));
    const framed = await page.evaluate(async (base) => {
      const f = document.createElement('iframe');
      f.src = `${base}/`;
      document.body.append(f);
      await new Promise((r) => setTimeout(r, 1500));
      let blocked;
      try { blocked = !f.contentDocument || !f.contentDocument.querySelector('#main'); } catch { blocked = true; }
      f.remove();
      return blocked;
    }, opts.base);
    if (!framed) fail('the dashboard rendered inside a frame: frame denial does not work');
    ok('security headers: CSP (own origin, no framing), X-Content-Type-Options nosniff, X-Frame-Options DENY; a frame of it stays empty');
    if (opts.readRequired) {
      await waitFor(() => document.body.dataset.needsToken === 'true' && !document.getElementById('notice').hidden
        && document.activeElement === document.getElementById('token'), null, 'the dashboard to ask for the token (reads need it)');
      ok('reads refused without a token: the dashboard says so and puts the cursor in the token field');
      await page.locator('#token').fill(opts.token);
      await page.locator('#token').blur();
    }

    // ---------------------------------------------------------------- runs list
    await waitFor((id) => [...document.querySelectorAll('table.runs tbody tr')].some((tr) => tr.dataset.runId === id), runId,
      `the runs list to show run ${runId}`);
    const rows = await page.evaluate(() => [...document.querySelectorAll('table.runs tbody tr')].map((tr) => ({
      id: tr.dataset.runId, link: tr.querySelector('a.run-link')?.textContent, model: tr.querySelector('td.model')?.textContent,
    })));
    for (const r of runs) {
      const row = rows.find((x) => x.id === r.run_id);
      if (!row) fail(`run ${JSON.stringify(r.run_id)} from the API is missing from the runs list`);
      if (row.link !== r.run_id) fail(`runs list shows run id ${JSON.stringify(row.link)}, API says ${JSON.stringify(r.run_id)}`);
      if (row.model !== r.model) fail(`runs list shows model ${JSON.stringify(row.model)} for ${r.run_id}, API says ${JSON.stringify(r.model)}`);
    }
    ok(`runs list shows the seeded run ${JSON.stringify(runId)} and all ${runs.length} runs with their model names as text`);
    await checkNoInjection(page, 'runs list');
    await page.screenshot({ path: sibling('-runs'), fullPage: true });

    // ---------------------------------------------------------------- run view
    await page.evaluate((id) => {
      const a = [...document.querySelectorAll('table.runs a.run-link')].find((x) => x.textContent === id);
      a.focus();
    }, runId);
    await page.keyboard.press('Enter'); // links are keyboard-usable
    try {
      await page.waitForFunction(({ l, n }) => {
        const svg = [...document.querySelectorAll('svg[data-chart="memorization_gap"]')].find((x) => x.dataset.layer === l);
        return svg && svg.querySelectorAll('circle.pt').length === n;
      }, { l: layer, n: gapPoints }, { timeout: 15000, polling: 100 });
    } catch {
      const drawn = await page.evaluate((l) => {
        const svg = [...document.querySelectorAll('svg[data-chart="memorization_gap"]')].find((x) => x.dataset.layer === l);
        return svg ? svg.querySelectorAll('circle.pt').length : 'no chart';
      }, layer);
      fail(`the gap chart of ${layer} draws ${drawn} points after 15 s, GET /signals returns ${gapPoints}`);
    }
    ok(`gap chart of ${layer} draws ${gapPoints} points, as many as GET /signals returns`);
    const layersShown = await page.evaluate(() => [...document.querySelectorAll('section.layer')].map((x) => x.dataset.layer));
    for (const l of detail.layers || []) {
      if (!layersShown.includes(l.name)) fail(`layer ${l.name} has no panel in the run view`);
    }
    const modelShown = await page.evaluate(() => document.querySelector('.run-header dd.model')?.textContent);
    if (modelShown !== detail.model) fail(`run header shows model ${JSON.stringify(modelShown)}, API says ${JSON.stringify(detail.model)}`);
    ok(`run view has a panel per layer (${layersShown.length}) and shows the model name as text`);

    const groups = new Map();
    for (const a of runAlerts) {
      const g = groups.get(a.fingerprint);
      if (!g || a.last_seen_ms > g.last_seen_ms) groups.set(a.fingerprint, a);
    }
    await waitFor((n) => document.querySelectorAll('ul.alerts li.alert').length >= n, groups.size, `${groups.size} alerts in the alerts panel`);
    const shownAlerts = await page.evaluate(() => [...document.querySelectorAll('ul.alerts li.alert')].map((li) => ({
      fp: li.dataset.fingerprint, summary: li.querySelector('.summary')?.textContent,
    })));
    for (const a of groups.values()) {
      const li = shownAlerts.find((x) => x.fp === a.fingerprint);
      if (!li) fail(`alert ${a.fingerprint} (${JSON.stringify(a.summary)}) is not in the alerts panel`);
      if (li.summary !== a.summary) fail(`alert ${a.fingerprint} shows summary ${JSON.stringify(li.summary)}, API says ${JSON.stringify(a.summary)}`);
    }
    ok(`alerts panel shows the ${groups.size} alerts of the run with their summaries as text`);

    if (snapshots.length) {
      const shown = await page.evaluate(() => [...document.querySelectorAll('ul.snapshots li.snapshot')].map((li) => ({
        id: li.dataset.snapshotId, sha: li.querySelector('.sha')?.textContent,
      })));
      const failedShown = await page.evaluate(() => [...document.querySelectorAll('ul.snapshots li.snapshot.failed')].map((li) => ({
        id: li.dataset.snapshotId, reason: li.querySelector('.failure')?.textContent, download: !!li.querySelector('a.download'),
      })));
      for (const sn of snapshots) {
        if (sn.status === 'FAILED') {
          // an edit request the service could not serve: its reason, nothing to download
          const li = failedShown.find((x) => x.id === sn.snapshot_id);
          if (!li) fail(`failed snapshot ${sn.snapshot_id} is not shown as failed`);
          if (li.reason !== sn.reason) fail(`failed snapshot ${sn.snapshot_id} shows ${JSON.stringify(li.reason)}, API says ${JSON.stringify(sn.reason)}`);
          if (li.download) fail(`failed snapshot ${sn.snapshot_id} offers a download`);
          continue;
        }
        const li = shown.find((x) => x.id === sn.snapshot_id);
        if (!li) fail(`snapshot ${sn.snapshot_id} is not in the snapshots list`);
        if (li.sha !== String(sn.sha256).slice(0, 12)) fail(`snapshot ${sn.snapshot_id} shows sha ${li.sha}`);
      }
      ok(`snapshots list shows the ${snapshots.length} snapshots (${failedShown.length} failed, with their reason) with their short sha256`);
    }

    // a layer's dead letters and an invalid calibration are said on its panel (issue 11: "waiting for factors" hid them)
    let withDeadLetters = 0;
    for (const l of detail.layers || []) {
      const dl = l.dead_letters;
      if (dl && Number(dl.total) > 0) {
        await waitFor(({ name, total }) => {
          const el = [...document.querySelectorAll('.dead-letters')].find((x) => x.dataset.layer === name);
          return el && el.textContent.includes(`${Number(total).toLocaleString('en-US')} dead letter`);
        }, { name: l.name, total: dl.total }, `the ${dl.total} dead letters of ${l.name} on its panel`);
        withDeadLetters++;
      }
      if (l.calibration_valid === false) {
        await waitFor((problem) => [...document.querySelectorAll('.calibration-invalid')].some((x) => x.textContent === problem),
          l.calibration_problem, `the invalid calibration of ${l.name} on its panel`);
      }
    }
    ok(`dead letters shown on the panels of ${withDeadLetters} layer(s) that have them`);

    // per layer: the top EXACT examples and the spectra, wherever the service has them
    let withScores = 0;
    let withSpectra = 0;
    for (const l of detail.layers || []) {
      const scores = await fetch(`${opts.base}/api/runs/${enc(runId)}/scores?layer=${enc(l.name)}&kind=EXACT&top=20`, { headers: { Authorization: `Bearer ${opts.token}` } });
      const top = scores.ok ? ((await scores.json()).top || []).map((e) => String(e.sample_id)) : [];
      if (top.length) {
        await waitFor(({ name, n }) => {
          const fig = [...document.querySelectorAll('figure.examples-fig')].find((f) => f.dataset.layer === name);
          return fig && fig.querySelectorAll('td.sample').length === n;
        }, { name: l.name, n: top.length }, `${top.length} top EXACT examples of ${l.name}`);
        const shown = await page.evaluate((name) => [...[...document.querySelectorAll('figure.examples-fig')].find((f) => f.dataset.layer === name)
          .querySelectorAll('td.sample')].map((td) => td.textContent), l.name);
        if (JSON.stringify(shown) !== JSON.stringify(top)) fail(`top examples of ${l.name} show ${JSON.stringify(shown)}, API says ${JSON.stringify(top)}`);
        withScores++;
      }
      const spectra = await fetch(`${opts.base}/api/runs/${enc(runId)}/spectra?layer=${enc(l.name)}`, { headers: { Authorization: `Bearer ${opts.token}` } });
      if (spectra.ok) {
        const sp = await spectra.json();
        for (const f of ['g', 'a']) {
          const n = (sp[f] || []).length;
          if (!n) continue;
          await waitFor(({ name, chart, count }) => {
            const svg = [...document.querySelectorAll(`svg[data-chart="${chart}"]`)].find((x) => x.dataset.layer === name);
            if (!svg) return false;
            const bars = svg.querySelectorAll('rect.bar').length;
            return bars === count || (bars === 0 && svg.querySelector('path.stems, g.spectrum path.curve'));
          }, { name: l.name, chart: `spectrum_${f}`, count: n }, `the ${f.toUpperCase()} spectrum of ${l.name} (${n} eigenvalues) to be drawn`);
        }
        withSpectra++;
      }
    }
    ok(`top EXACT examples match the API on ${withScores} layer(s); spectra drawn for ${withSpectra} layer(s)`);
    await checkNoInjection(page, 'run view');

    // ---------------------------------------------------------------- live alert
    const wantState = opts.transport === 'sse' ? 'live' : 'polling';
    await waitFor((st) => document.getElementById('conn').dataset.state === st, wantState, `the connection indicator to say ${wantState}`, 30000);
    const label = await page.evaluate(() => document.querySelector('#conn .label').textContent);
    ok(`connection indicator shows ${JSON.stringify(label)}`);
    const before = await page.evaluate(() => {
      window.__noReload = 'still-the-same-page';
      return {
        ids: [...document.querySelectorAll('ul.alerts li.alert')].map((li) => li.dataset.alertId),
        events: Number(document.getElementById('conn').dataset.events || 0),
      };
    });
    console.log(`WAITING_FOR_ALERT run=${runId}`);
    await waitFor(({ ids, want }) => [...document.querySelectorAll('ul.alerts li.alert')]
      .some((li) => !ids.includes(li.dataset.alertId) && (want === null || li.dataset.alertId === want)), { ids: before.ids, want: opts.liveAlertId },
    `the newly published alert${opts.liveAlertId ? ` ${opts.liveAlertId}` : ''} to appear without reload (${opts.transport})`, opts.alertTimeoutS * 1000);
    const after = await page.evaluate(({ ids, want }) => ({
      marker: window.__noReload,
      events: Number(document.getElementById('conn').dataset.events || 0),
      state: document.getElementById('conn').dataset.state,
      fresh: [...document.querySelectorAll('ul.alerts li.alert')].filter((li) => !ids.includes(li.dataset.alertId) && (want === null || li.dataset.alertId === want))
        .map((li) => ({ id: li.dataset.alertId, summary: li.querySelector('.summary')?.textContent })),
    }), { ids: before.ids, want: opts.liveAlertId });
    if (after.marker !== 'still-the-same-page') fail('the page reloaded while waiting for the live alert');
    if (opts.transport === 'sse' && !(after.events > before.events)) fail(`the new alert did not come over SSE (events ${before.events} -> ${after.events}, state ${after.state})`);
    console.log(`ALERT_SEEN id=${after.fresh[0].id}`);
    ok(`live alert ${JSON.stringify(after.fresh[0].summary)} appeared without reload via ${opts.transport}`);

    if (opts.checkReconnect) {
      if (opts.transport !== 'sse') fail('--check-reconnect needs --transport sse');
      expectedErrors.push((text, url) => /\/api\/events/.test(url));
      console.log('WAITING_FOR_STREAM_DROP');
      await waitFor(() => document.getElementById('conn').dataset.state !== 'live', null, 'the indicator to notice the dropped stream', 15000);
      const down = await page.evaluate(() => document.querySelector('#conn .label').textContent);
      await waitFor(() => document.getElementById('conn').dataset.state === 'live', null, 'the stream to reconnect on its own', 60000);
      ok(`dropped stream: indicator showed ${JSON.stringify(down)}, then reconnected to live`);
    }

    // ---------------------------------------------------------------- edit form
    const editRow = await page.evaluate((l) => [...document.querySelectorAll('.edit-layer')].findIndex((r) => r.dataset.layer === l), layer);
    if (editRow < 0) fail(`the edit form has no row for layer ${layer}`);
    await page.fill(`#edit-rho${editRow}`, '0.9');
    await page.fill('#edit-reason', 'browser test: wrong token first');
    await page.fill('#token', `${opts.token}-wrong`);
    await page.click('#edit-submit');
    await waitFor(() => /401/.test(document.getElementById('edit-result').textContent), null, 'the edit form to report 401 for a wrong token');
    ok(`wrong token: ${JSON.stringify(await page.textContent('#edit-result'))}`);
    await page.fill('#token', opts.token);
    await page.fill('#edit-reason', 'browser test: right token');
    // every layer ticked: a layer the service cannot edit yet is refused at the call, with its reason on the form
    // (expected before the request: Chromium may log the 409 before the key press returns, as a CI run saw)
    expectedErrors.push((text, url) => /status of 409/.test(text) && /\/api\/runs\/[^/]+\/edits$/.test(url));
    await page.focus('#edit-submit');
    await page.keyboard.press('Enter'); // the form works from the keyboard
    await waitFor(() => /accepted|^409: \S/i.test(document.getElementById('edit-result').textContent), null,
      'the edit form to report "accepted", or a 409 with the reason, for the right token');
    ok(`right token, every layer: ${JSON.stringify(await page.textContent('#edit-result'))}`);
    // one layer the service can edit, alone: accepted
    const editLayer = opts.editLayer ?? layer;
    await page.evaluate((l) => document.querySelectorAll('.edit-layer').forEach((row) => {
      const cb = row.querySelector('input[type=checkbox]');
      if (cb.checked !== (row.dataset.layer === l)) cb.click();
    }), editLayer);
    const row = await page.evaluate((l) => [...document.querySelectorAll('.edit-layer')].findIndex((r) => r.dataset.layer === l), editLayer);
    if (row < 0) fail(`the edit form has no row for layer ${editLayer}`);
    await page.fill(`#edit-rho${row}`, '0.9');
    await page.click('#edit-submit');
    await waitFor(() => /accepted/i.test(document.getElementById('edit-result').textContent), null,
      `the edit form to report "accepted" for ${editLayer} alone`);
    ok(`right token, ${editLayer} alone: ${JSON.stringify(await page.textContent('#edit-result'))}`);
    const storage = await page.evaluate((t) => ({
      session: Object.keys(sessionStorage).some((k) => sessionStorage.getItem(k) === t),
      local: Object.keys(localStorage).some((k) => (localStorage.getItem(k) || '').includes(t)),
      cookie: document.cookie.includes(t),
    }), opts.token);
    if (!storage.session) fail('the token is not kept in sessionStorage');
    if (storage.local || storage.cookie) fail('the token leaked into localStorage or a cookie');
    ok('the token is kept in sessionStorage only');

    if (opts.checkDownload) {
      if (!snapshots.length) fail('--check-download but the run has no snapshot');
      const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }).catch(() => null),
        page.click(`ul.snapshots li.snapshot a.download >> nth=0`)]);
      if (!dl) fail(`no download started; the page says ${JSON.stringify(await page.textContent('#snapshots .form-result'))}`);
      const file = await dl.path();
      const size = fs.statSync(file).size;
      // the list now, not at the start: the accepted edit above may have added the newest snapshot
      const listed = await api(`/api/runs/${enc(runId)}/snapshots`);
      const want = listed.find((s) => s.snapshot_id === (dl.suggestedFilename().replace(/\.safetensors$/, '')))?.size_bytes;
      if (want === undefined) fail(`downloaded ${dl.suggestedFilename()}, which GET /snapshots does not list`);
      if (size !== want) fail(`downloaded ${size} bytes, the snapshot says ${want}`);
      ok(`snapshot download with the token: ${dl.suggestedFilename()} (${size} bytes)`);
    }

    await checkNoInjection(page, 'after live updates');
    if (consoleErrors.length) fail(`console errors:\n  ${consoleErrors.join('\n  ')}`);
    ok('no console errors');

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: opts.png, fullPage: true });
    ok(`screenshot ${opts.png}`);
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: sibling('-dark'), fullPage: true });
    if (consoleErrors.length) fail(`console errors:\n  ${consoleErrors.join('\n  ')}`);
    console.log('PASS: dashboard browser test');
  } catch (e) {
    const msg = e instanceof CheckError ? e.message : `unexpected error: ${e && e.stack ? e.stack : e}`;
    console.error(`FAIL: ${msg}`);
    if (consoleErrors.length && !/console errors/.test(msg)) console.error(`console errors so far:\n  ${consoleErrors.join('\n  ')}`);
    if (page) await page.screenshot({ path: opts.png, fullPage: true }).then(() => console.error(`(screenshot of the failure: ${opts.png})`)).catch(() => {});
    process.exitCode = 1;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

async function checkNoInjection(page, where) {
  const r = await page.evaluate(() => {
    const handlers = [];
    for (const el of document.querySelectorAll('*')) {
      for (const a of el.attributes) if (/^on/i.test(a.name)) handlers.push(`${el.tagName.toLowerCase()}[${a.name}]`);
    }
    return {
      xss: typeof window.__xss,
      injected: document.querySelectorAll('img, iframe, object, embed, script:not([src])').length,
      handlers,
      badLinks: [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')).filter((h) => /^\s*javascript:/i.test(h)),
    };
  });
  if (r.xss !== 'undefined') fail(`${where}: window.__xss is ${r.xss}: a hostile string was run as markup`);
  if (r.injected) fail(`${where}: ${r.injected} img/iframe/object/embed/inline script elements in the page: a hostile string was parsed as HTML`);
  if (r.handlers.length) fail(`${where}: inline event handler attributes ${r.handlers.join(', ')}`);
  if (r.badLinks.length) fail(`${where}: javascript: links ${r.badLinks.join(', ')}`);
  ok(`${where}: hostile strings stay text (window.__xss undefined, no injected elements or handlers)`);
}

const overall = setTimeout(() => {
  console.error('FAIL: the browser test did not finish within 240 s');
  process.exit(1);
}, (240 + opts.alertTimeoutS) * 1000);
overall.unref();
await main();
clearTimeout(overall);
