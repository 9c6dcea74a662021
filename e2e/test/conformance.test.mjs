// The official MCP conformance suite (@modelcontextprotocol/conformance,
// server mode, active suite) against `tlswatch serve --http` on loopback.
// Fixture-only scenarios are baselined in e2e/conformance-baseline.yml; the
// tool's exit code fails on an unexpected failure or a stale baseline entry.
// Each scenario's checks are also reported here as a subtest.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { E2E_DIR, node22, startHttpServer } from './helpers.mjs';

/** Scenarios that need no fixture: they must pass and never be baselined. */
const REQUIRED = [
  'server-initialize', 'ping', 'logging-set-level', 'tools-list', 'resources-list',
  'prompts-list', 'server-sse-multiple-streams', 'dns-rebinding-protection',
];
const BASELINE = path.join(E2E_DIR, 'conformance-baseline.yml');

function baselined() {
  const text = fs.readFileSync(BASELINE, 'utf8');
  return [...text.matchAll(/^\s*-\s*([\w-]+)\s*$/gm)].map((m) => m[1]);
}

function runConformance(url, outDir) {
  const env = {
    ...process.env,
    PATH: `${path.dirname(node22())}:${process.env.PATH}`,
    npm_config_update_notifier: 'false',
    NO_COLOR: '1',
  };
  const argv = ['--no-install', 'conformance', 'server', '--url', url,
    '--expected-failures', BASELINE, '-o', outDir];
  return new Promise((resolve) => {
    execFile('npx', argv, { cwd: E2E_DIR, env, timeout: 240_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, argv });
    });
  });
}

test('MCP conformance suite 0.1.16 (server, active) against tlswatch serve --http', async (t) => {
  const list = baselined();
  for (const r of REQUIRED) assert.ok(!list.includes(r), `${r} needs no fixture and must not be baselined`);

  const srv = await startHttpServer();
  // Not a tmpDir(): kept when the run fails, for its checks.json files.
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tlswatch-conformance-'));
  let run;
  try {
    run = await runConformance(srv.url, outDir);
  } finally {
    await srv.stop();
  }

  // One subtest per scenario, from the checks.json files the tool wrote.
  const results = new Map();
  for (const d of fs.readdirSync(outDir)) {
    const m = d.match(/^server-(.+)-\d{4}-\d\d-\d\dT.*$/);
    const f = path.join(outDir, d, 'checks.json');
    if (m && fs.existsSync(f)) results.set(m[1], JSON.parse(fs.readFileSync(f, 'utf8')));
  }
  for (const [scenario, checks] of [...results].sort()) {
    const bad = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
    const expected = list.includes(scenario);
    await t.test(`${scenario}${expected ? ' (baselined: needs a test fixture)' : ''}`, () => {
      const detail = bad.map((c) => `${c.status} ${c.id}: ${c.errorMessage ?? ''} ${JSON.stringify(c.details ?? {}).slice(0, 300)}`).join('\n');
      if (expected) {
        assert.ok(bad.length > 0, `${scenario} passes now: remove it from conformance-baseline.yml`);
      } else {
        assert.equal(bad.length, 0, `${scenario} failed:\n${detail}`);
      }
    });
  }
  for (const r of REQUIRED) assert.ok(results.has(r), `scenario ${r} did not run (output in ${outDir})`);

  const summary = run.stdout.slice(run.stdout.lastIndexOf('=== SUMMARY ==='));
  assert.equal(run.code, 0,
    `conformance exited ${run.code} (results kept in ${outDir})\n${summary}\n${run.stderr.slice(-2000)}\nserver stderr: ${srv.stderr.text.slice(-2000)}`);
  fs.rmSync(outDir, { recursive: true, force: true });
});
