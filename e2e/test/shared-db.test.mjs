// DESIGN.md: "Two `tlswatch serve` processes on the same --db (two IDE
// windows) must both work", and everything a watch needs survives a restart.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  callTool, connect, resultText, startLab, targetArgs, tmpDir, waitFor, watchRecord,
} from './helpers.mjs';

describe('two serve processes on one --db, and a restart', () => {
  let lab;
  let a;
  let b;
  let db;
  let id;

  before(async () => {
    lab = await startLab();
    db = path.join(tmpDir(), 'shared.db');
    a = await connect('http', { caFile: lab.ca_file, db });
    b = await connect('stdio', { caFile: lab.ca_file, db });
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await lab?.stop();
  });

  it('a watch added through one process is listed by the other', async () => {
    const res = await callTool(a.client, 'watch_endpoint', { ...targetArgs(lab, 'valid'), schedule: '@every 1h' });
    assert.notEqual(res.isError, true, resultText(res));
    id = watchRecord(res.structuredContent).id;
    await waitFor(async () => {
      const lw = await callTool(b.client, 'list_watches', {});
      assert.notEqual(lw.isError, true, resultText(lw));
      return lw.structuredContent.watches.some((w) => w.id === id);
    }, { timeoutMs: 15_000, intervalMs: 500, what: `the second process to list watch ${id}` });
  });

  it('both processes probe', async () => {
    for (const c of [a, b]) {
      const r = await callTool(c.client, 'check_tls', targetArgs(lab, 'valid'));
      assert.notEqual(r.isError, true, resultText(r));
      assert.equal(r.structuredContent.status, 'ok');
    }
  });

  it('the watch survives closing both and starting a new process', async () => {
    await a.close();
    await b.close();
    a = null;
    b = await connect('stdio', { caFile: lab.ca_file, db });
    const lw = await callTool(b.client, 'list_watches', {});
    const w = lw.structuredContent.watches.find((x) => x.id === id);
    assert.ok(w, `watch ${id} is still there after a restart`);
    assert.equal(w.schedule, '@every 1h');
    assert.equal(w.last_report?.status, 'ok', 'its last report survived');
  });
});
