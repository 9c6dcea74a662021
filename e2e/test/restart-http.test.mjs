// A subscriber over streamable HTTP (TypeScript SDK, protocol 2025-11-25)
// never goes silent: when `tlswatch serve` restarts on the same database and
// port, the client's very next request is refused with 404 (its session is
// gone), it initializes a new session, subscribes again and keeps receiving
// updates.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import {
  CALL_TIMEOUT_MS, callTool, newClient, resultText, startHttpServer, startLab, targetArgs, tmpDir, waitFor, watchRecord,
} from './helpers.mjs';

async function connectHTTP(url) {
  const c = newClient('tlswatch-e2e-restart');
  const errors = [];
  const transport = new StreamableHTTPClientTransport(new URL(url));
  transport.onerror = (e) => errors.push(e);
  await c.client.connect(transport);
  return { ...c, transport, errors };
}

describe('TypeScript SDK over HTTP across a server restart', () => {
  let lab;
  let db;
  let server;
  let first;
  let second;
  let uri;

  before(async () => {
    lab = await startLab();
    db = path.join(tmpDir(), 'restart.db');
    server = await startHttpServer({ caFile: lab.ca_file, db });
  });

  after(async () => {
    await first?.client.close().catch(() => {});
    await second?.client.close().catch(() => {});
    await server?.stop();
    await lab?.stop();
  });

  it('subscribes to a watch that changes every few seconds and hears about it', async () => {
    first = await connectHTTP(server.url);
    const res = await callTool(first.client, 'watch_endpoint', { ...targetArgs(lab, 'rotating'), schedule: '@every 1s' });
    assert.notEqual(res.isError, true, resultText(res));
    uri = `tlswatch://watches/${watchRecord(res.structuredContent).id}`;
    const links = res.content.filter((c) => c.type === 'resource_link').map((c) => c.uri);
    assert.deepEqual(links, [uri], 'watch_endpoint links to the watch resource');
    await first.client.subscribeResource({ uri }, { timeout: CALL_TIMEOUT_MS });
    const mark = first.seen.updated.length;
    await waitFor(() => first.seen.updated.slice(mark).some((u) => u.uri === uri),
      { timeoutMs: 30_000, what: `an update of ${uri}` });
  });

  it('after a restart on the same port and database, the next request is told 404', async () => {
    await server.stop();
    server = await startHttpServer({ caFile: lab.ca_file, db, port: server.port });
    await assert.rejects(callTool(first.client, 'list_watches', {}), (e) => {
      assert.equal(e.code, 404, `want a 404, got ${e}`);
      return true;
    });
  });

  it('a new session re-subscribes and keeps receiving updates', async () => {
    await first.client.close().catch(() => {});
    second = await connectHTTP(server.url);
    const lw = await callTool(second.client, 'list_watches', {});
    assert.ok(lw.structuredContent.watches.some((w) => uri.endsWith(w.id)), 'the watch survived the restart');
    await second.client.subscribeResource({ uri }, { timeout: CALL_TIMEOUT_MS });
    const mark = second.seen.updated.length;
    await waitFor(() => second.seen.updated.slice(mark).some((u) => u.uri === uri),
      { timeoutMs: 30_000, what: `an update of ${uri} on the new session` });
  });
});
