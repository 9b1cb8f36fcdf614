#!/usr/bin/env node
// Runs dashboard.spec.mjs against fixture-server.mjs, playing the driver's part (publishing the
// live alert when the spec asks for it, dropping the event stream when asked), once over SSE and
// once with SSE disabled (polling).
//   node run-against-fixture.mjs [out-dir]   (default: service/target/dashboard-fixture; screenshots land there)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.resolve(process.argv[2] || path.join(here, '..', '..', '..', 'target', 'dashboard-fixture'));
fs.mkdirSync(outDir, { recursive: true });
const TOKEN = 'fixture-token';

function startFixture(extra) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'fixture-server.mjs'), '--port', '0', '--token', TOKEN, ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    const rl = readline.createInterface({ input: p.stdout });
    rl.on('line', (line) => {
      const m = /listening (http:\/\/\S+?)\/? /.exec(line);
      if (m) resolve({ proc: p, base: m[1] });
    });
    p.on('exit', (code) => reject(new Error(`fixture server exited with ${code}`)));
  });
}

async function runSpec(name, fixtureArgs, specArgs) {
  const fx = await startFixture(fixtureArgs);
  const png = path.join(outDir, `dashboard-${name}.png`);
  const liveId = `live-${name}-${Date.now().toString(36)}`;
  const spec = spawn(process.execPath, [path.join(here, 'dashboard.spec.mjs'), fx.base, TOKEN, png, '--live-alert-id', liveId, ...specArgs],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  readline.createInterface({ input: spec.stdout }).on('line', async (line) => {
    console.log(`[${name}] ${line}`);
    if (line.startsWith('WAITING_FOR_ALERT')) {
      const r = await fetch(`${fx.base}/__fixture/alert`, { method: 'POST', body: JSON.stringify({ id: liveId }) });
      console.log(`[${name}] driver: published alert ${(await r.json()).id}`);
    }
    if (line.startsWith('WAITING_FOR_STREAM_DROP')) {
      const r = await fetch(`${fx.base}/__fixture/drop-sse?for_ms=2500`, { method: 'POST' });
      console.log(`[${name}] driver: dropped ${(await r.json()).dropped} event streams, refusing new ones for 2.5 s`);
    }
  });
  const code = await new Promise((resolve) => spec.on('exit', resolve));
  fx.proc.kill('SIGTERM');
  return code;
}

const results = [];
results.push(['sse', await runSpec('sse', [], ['--check-download', '--check-reconnect'])]);
results.push(['polling', await runSpec('polling', ['--no-sse'], ['--transport', 'polling'])]);
for (const [name, code] of results) console.log(`${name}: ${code === 0 ? 'PASS' : `FAIL (exit ${code})`}`);
process.exit(results.every(([, c]) => c === 0) ? 0 : 1);
