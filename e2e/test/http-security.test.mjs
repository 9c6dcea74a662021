// Streamable HTTP transport: bearer token (--token and TLSWATCH_TOKEN), Origin
// validation (DNS rebinding), sessions. Plain HTTP requests on loopback plus
// an SDK client with the token header.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { CALL_TIMEOUT_MS, REQUIRED_TOOLS, startHttpServer } from './helpers.mjs';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-http-e2e', version: '1.0.0' } },
};

/** One HTTP request with full control of the headers (Host and Origin included). */
function request(url, { method = 'POST', headers = {}, body } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method,
      headers: {
        accept: 'application/json, text/event-stream',
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      timeout: 15_000,
    }, (res) => {
      // SSE responses stay open: read what arrives for a moment, then stop.
      let text = '';
      const done = () => resolve({ status: res.statusCode, headers: res.headers, text });
      res.on('data', (d) => { text += d; });
      res.on('end', done);
      if (String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
        setTimeout(() => { res.destroy(); done(); }, 500);
      }
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

describe('HTTP transport with --token', () => {
  let srv;
  before(async () => { srv = await startHttpServer({ token: 's3cret-token' }); });
  after(async () => { await srv?.stop(); });

  it('401 without Authorization', async () => {
    const r = await request(srv.url, { body: INIT });
    assert.equal(r.status, 401, `status ${r.status}: ${r.text.slice(0, 200)}`);
  });

  it('401 without Authorization (plain fetch)', async () => {
    const r = await fetch(srv.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(INIT),
    });
    assert.equal(r.status, 401);
    await r.body?.cancel();
  });

  it('401 with a wrong bearer token', async () => {
    const r = await request(srv.url, { body: INIT, headers: { authorization: 'Bearer nope' } });
    assert.equal(r.status, 401);
  });

  it('401 with the token in the wrong scheme', async () => {
    const r = await request(srv.url, { body: INIT, headers: { authorization: 'Basic s3cret-token' } });
    assert.equal(r.status, 401);
  });

  it('200 with the right bearer token', async () => {
    const r = await request(srv.url, { body: INIT, headers: { authorization: 'Bearer s3cret-token' } });
    assert.equal(r.status, 200, `status ${r.status}: ${r.text.slice(0, 200)}`);
    assert.match(r.text, /"protocolVersion"/);
  });

  it('the SDK client works with the Authorization header', async () => {
    const client = new Client({ name: 'token-e2e', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(srv.url), {
      requestInit: { headers: { Authorization: 'Bearer s3cret-token' } },
    });
    await client.connect(transport);
    try {
      const tools = (await client.listTools(undefined, { timeout: CALL_TIMEOUT_MS })).tools.map((t) => t.name);
      for (const n of REQUIRED_TOOLS) assert.ok(tools.includes(n), `${n} listed`);
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  });
});

describe('HTTP transport with TLSWATCH_TOKEN', () => {
  let srv;
  before(async () => { srv = await startHttpServer({ env: { TLSWATCH_TOKEN: 'env-token' } }); });
  after(async () => { await srv?.stop(); });

  it('401 without the token, 200 with it', async () => {
    assert.equal((await request(srv.url, { body: INIT })).status, 401);
    assert.equal((await request(srv.url, { body: INIT, headers: { authorization: 'Bearer env-token' } })).status, 200);
  });
});

describe('HTTP transport Origin validation and sessions', () => {
  let srv;
  before(async () => { srv = await startHttpServer(); });
  after(async () => { await srv?.stop(); });

  it('403 for a foreign Origin', async () => {
    const r = await request(srv.url, { body: INIT, headers: { origin: 'http://evil.example.com' } });
    assert.equal(r.status, 403, `status ${r.status}: ${r.text.slice(0, 200)}`);
  });

  it('403 for a foreign Origin (plain fetch)', async () => {
    const r = await fetch(srv.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        origin: 'https://evil.example.com',
      },
      body: JSON.stringify(INIT),
    });
    assert.equal(r.status, 403);
    await r.body?.cancel();
  });

  it('403 for a foreign Origin that only resembles loopback', async () => {
    const r = await request(srv.url, { body: INIT, headers: { origin: 'http://127.0.0.1.evil.example.com' } });
    assert.equal(r.status, 403);
  });

  it('4xx for a rebinding Host with a foreign Origin', async () => {
    const r = await request(srv.url, {
      body: INIT, headers: { host: 'evil.example.com', origin: 'http://evil.example.com' },
    });
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
  });

  it('a loopback Origin and no Origin are accepted', async () => {
    const r1 = await request(srv.url, { body: INIT, headers: { origin: `http://127.0.0.1:${srv.port}` } });
    assert.equal(r1.status, 200, `loopback origin: ${r1.status} ${r1.text.slice(0, 200)}`);
    const r2 = await request(srv.url, { body: INIT, headers: { origin: `http://localhost:${srv.port}` } });
    assert.equal(r2.status, 200, `localhost origin: ${r2.status}`);
    const r3 = await request(srv.url, { body: INIT });
    assert.equal(r3.status, 200, `no origin: ${r3.status}`);
  });

  it('initialize issues a session id; DELETE ends the session', async () => {
    const r = await request(srv.url, { body: INIT });
    assert.equal(r.status, 200);
    const sid = r.headers['mcp-session-id'];
    assert.ok(sid, 'Mcp-Session-Id header on the initialize response');
    const hdrs = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
    const n = await request(srv.url, { body: { jsonrpc: '2.0', method: 'notifications/initialized' }, headers: hdrs });
    assert.equal(n.status, 202, `notification status ${n.status}`);
    const p = await request(srv.url, { body: { jsonrpc: '2.0', id: 2, method: 'ping' }, headers: hdrs });
    assert.equal(p.status, 200, `ping in session: ${p.status} ${p.text.slice(0, 200)}`);
    const d = await request(srv.url, { method: 'DELETE', headers: hdrs });
    if (d.status === 405) return; // the spec lets a server refuse client-initiated termination
    assert.ok(d.status >= 200 && d.status < 300, `DELETE status ${d.status}`);
    const after = await request(srv.url, { body: { jsonrpc: '2.0', id: 3, method: 'ping' }, headers: hdrs });
    assert.equal(after.status, 404, `a request in a terminated session gets 404, got ${after.status}`);
  });

  it('malformed JSON gets a JSON-RPC parse error, not a crash', async () => {
    const r = await request(srv.url, { body: '{"jsonrpc": "2.0", "id": 1, "method": ' });
    assert.ok(r.status === 400 || r.status === 200, `status ${r.status}`);
    assert.match(r.text, /-32700|parse/i);
    const ok = await request(srv.url, { body: INIT });
    assert.equal(ok.status, 200, 'still serving');
  });
});
