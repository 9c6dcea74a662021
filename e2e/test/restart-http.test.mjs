// A subscriber over streamable HTTP (TypeScript SDK, protocol 2025-11-25)
// never goes silent: when `tlswatch serve` restarts on the same database and
// port, the client's very next request is refused with 404 (its session is
// gone), it initializes a new session, subscribes again and keeps receiving
// updates; what happened while it was away it reads from the alert feed,
// tlswatch://alerts?after=CURSOR, with the cursor of its last read.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import {
  CALL_TIMEOUT_MS, callTool, newClient, readJSONResource, resultText, startHttpServer, startLab, targetArgs, tmpDir,
  waitFor, watchRecord,
} from './helpers.mjs';

const ALERTS = 'tlswatch://alerts';

// rotatedAfter reads the feed after cursor until it holds a rotation of
// the watch id, and returns that page.
async function rotatedAfter(client, cursor, id) {
  const uri = cursor ? `${ALERTS}?after=${encodeURIComponent(cursor)}` : ALERTS;
  let page;
  await waitFor(async () => {
    page = (await readJSONResource(client, uri)).json;
    return page.alerts.some((a) => a.watch_id === id && a.kind === 'rotated');
  }, { timeoutMs: 30_000, intervalMs: 250, what: `a rotation of ${id} in ${uri}` });
  assert.equal(typeof page.next, 'string');
  return page;
}

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
  let id;
  let seen;

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
    id = watchRecord(res.structuredContent).id;
    uri = `tlswatch://watches/${id}`;
    const links = res.content.filter((c) => c.type === 'resource_link').map((c) => c.uri);
    assert.deepEqual(links, [uri], 'watch_endpoint links to the watch resource');
    const mark = first.seen.updated.length;
    for (const u of [uri, ALERTS]) await first.client.subscribeResource({ uri: u }, { timeout: CALL_TIMEOUT_MS });
    for (const u of [uri, ALERTS]) {
      await waitFor(() => first.seen.updated.slice(mark).some((n) => n.uri === u),
        { timeoutMs: 30_000, what: `an update of ${u}` });
    }
    seen = await rotatedAfter(first.client, '', id);
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
    const mark = second.seen.updated.length;
    for (const u of [uri, ALERTS]) await second.client.subscribeResource({ uri: u }, { timeout: CALL_TIMEOUT_MS });
    for (const u of [uri, ALERTS]) {
      await waitFor(() => second.seen.updated.slice(mark).some((n) => n.uri === u),
        { timeoutMs: 30_000, what: `an update of ${u} on the new session` });
    }
  });

  it('reads what it missed from the alert feed, after the cursor of its last read', async () => {
    const missed = await rotatedAfter(second.client, seen.next, id);
    for (const a of missed.alerts) {
      assert.notEqual(a.id, seen.next, 'the feed after a cursor starts after it');
      assert.notEqual(a.kind, 'watch_added', 'events before the cursor are not repeated');
    }
    const caughtUp = (await readJSONResource(second.client, `${ALERTS}?after=${encodeURIComponent(missed.next)}&limit=1`)).json;
    assert.ok(caughtUp.alerts.length <= 1, 'limit bounds a page');
  });
});
