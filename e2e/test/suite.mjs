// The tool/resource/notification suite, run once per transport by
// sdk-stdio.test.mjs and sdk-http.test.mjs with the official TypeScript SDK
// client. Expectations are DESIGN.md's contract, against the TLS lab.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';

import {
  CALL_TIMEOUT_MS, OPTIONAL_TOOLS, REQUIRED_TOOLS, callTool, connect, firstArray,
  readJSONResource, resultText, sleep, startLab, targetArgs, waitFor, watchRecord,
} from './helpers.mjs';

const SEVERITIES = ['info', 'warning', 'critical'];
const STATUSES = ['ok', 'warning', 'critical', 'down'];
const STAGES = ['none', '30d', '14d', '7d', '1d', 'expired'];

function findings(report) {
  assert.ok(Array.isArray(report.findings), `findings must be an array: ${JSON.stringify(report)}`);
  for (const f of report.findings) {
    assert.equal(typeof f.code, 'string', `finding without code: ${JSON.stringify(f)}`);
    assert.ok(SEVERITIES.includes(f.severity), `finding ${f.code} has severity ${f.severity}`);
    assert.equal(typeof f.message, 'string', `finding ${f.code} has no message`);
    assert.ok(f.message.length > 0, `finding ${f.code} has an empty message`);
  }
  return report.findings;
}

function expectFinding(report, code, severity) {
  const f = findings(report).find((x) => x.code === code);
  assert.ok(f, `expected finding ${code}; got ${JSON.stringify(report.findings.map((x) => `${x.code}/${x.severity}`))}`);
  if (severity) assert.equal(f.severity, severity, `finding ${code} severity`);
  return f;
}

function assertReportShape(r) {
  assert.ok(r && typeof r === 'object', 'structuredContent missing');
  assert.ok(r.target && typeof r.target.host === 'string', `target.host missing: ${JSON.stringify(r.target)}`);
  assert.equal(typeof r.target.port, 'number', 'target.port must be a number');
  assert.ok(STATUSES.includes(r.status), `status ${r.status}`);
  assert.equal(typeof r.reachable, 'boolean', 'reachable must be boolean');
  assert.equal(typeof r.trusted, 'boolean', 'trusted must be boolean');
  assert.ok(STAGES.includes(r.expiry_stage), `expiry_stage ${r.expiry_stage}`);
  assert.ok(!Number.isNaN(Date.parse(r.checked_at)), `checked_at ${r.checked_at}`);
  assert.ok(Math.abs(Date.now() - Date.parse(r.checked_at)) < 10 * 60_000, `checked_at ${r.checked_at} is not now`);
  findings(r);
}

async function checkTLS(client, args) {
  const res = await callTool(client, 'check_tls', args);
  assert.notEqual(res.isError, true, `check_tls ${JSON.stringify(args)} returned isError: ${resultText(res)}`);
  assert.ok(resultText(res).length > 0, 'check_tls must return a human-readable text summary');
  assertReportShape(res.structuredContent);
  return res.structuredContent;
}

async function expectToolError(client, name, args, fieldRe) {
  const res = await callTool(client, name, args);
  const text = resultText(res);
  assert.equal(res.isError, true, `${name} ${JSON.stringify(args)} should be a tool error (isError: true); got ${text.slice(0, 300)}`);
  assert.match(text, fieldRe, `${name} error message should name the field (${fieldRe}); got: ${text}`);
}

export function defineSuite(kind) {
  describe(`tlswatch over ${kind} (TypeScript SDK client)`, () => {
    let lab;
    let conn;
    let client;
    let seen;
    let tools = new Map();
    const watchIds = {};

    before(async () => {
      lab = await startLab();
      conn = await connect(kind, { caFile: lab.ca_file });
      client = conn.client;
      seen = conn.seen;
    });

    after(async () => {
      if (conn) await conn.close();
      if (lab) await lab.stop();
      if (process.env.E2E_DEBUG && conn) console.error(`--- tlswatch stderr (${kind}) ---\n${conn.stderr.text}`);
    });

    it('initializes and declares tools, resources (subscribe, listChanged) and logging', () => {
      const info = client.getServerVersion();
      assert.ok(info?.name, 'serverInfo.name missing');
      assert.ok(info?.version, 'serverInfo.version missing');
      const caps = client.getServerCapabilities();
      assert.ok(caps?.tools, `tools capability missing: ${JSON.stringify(caps)}`);
      assert.ok(caps?.resources, `resources capability missing: ${JSON.stringify(caps)}`);
      assert.equal(caps.resources.subscribe, true, 'resources.subscribe must be true');
      assert.equal(caps.resources.listChanged, true, 'resources.listChanged must be true');
      assert.ok(caps?.logging, `logging capability missing (alerts go out as log messages): ${JSON.stringify(caps)}`);
    });

    it('answers ping', async () => {
      assert.deepEqual(await client.ping({ timeout: CALL_TIMEOUT_MS }), {});
    });

    it('lists every required DESIGN.md tool, each with a description, inputSchema and outputSchema', async () => {
      const res = await client.listTools(undefined, { timeout: CALL_TIMEOUT_MS });
      tools = new Map(res.tools.map((t) => [t.name, t]));
      const missing = REQUIRED_TOOLS.filter((n) => !tools.has(n));
      assert.deepEqual(missing, [], `tools missing from tools/list: ${missing.join(', ')} (have: ${[...tools.keys()].join(', ')})`);
      for (const name of [...REQUIRED_TOOLS, ...OPTIONAL_TOOLS]) {
        const t = tools.get(name);
        if (!t) continue;
        assert.ok(t.description, `${name}: description missing`);
        assert.equal(t.inputSchema?.type, 'object', `${name}: inputSchema.type`);
        assert.equal(t.outputSchema?.type, 'object', `${name}: outputSchema missing (DESIGN: structuredContent matches a declared outputSchema)`);
      }
      for (const name of ['check_tls', 'inspect_chain', 'watch_endpoint']) {
        const props = tools.get(name).inputSchema.properties ?? {};
        for (const f of ['target', 'ip', 'sni', 'timeout_ms']) {
          assert.ok(props[f], `${name}: target field ${f} missing from inputSchema`);
        }
        assert.ok((tools.get(name).inputSchema.required ?? []).includes('target'), `${name}: target must be required`);
      }
    });

    describe('check_tls', () => {
      it('valid lab server: ok, trusted, full Report', async () => {
        const sc = lab.scenarios.valid;
        const r = await checkTLS(client, targetArgs(lab, 'valid'));
        assert.equal(r.status, 'ok', `status; findings ${JSON.stringify(r.findings)}`);
        assert.equal(r.reachable, true);
        assert.equal(r.trusted, true);
        assert.equal(r.expiry_stage, 'none');
        const bad = r.findings.filter((f) => f.severity !== 'info');
        assert.deepEqual(bad, [], 'no warning or critical findings on the valid server');
        assert.equal(r.target.host, 'tlswatch.test');
        assert.equal(r.target.port, sc.port);
        assert.equal(r.target.sni, 'tlswatch.test');
        assert.equal(r.target.ip, '127.0.0.1');
        assert.equal(r.tls?.version, 'TLS 1.3');
        assert.equal(typeof r.tls.cipher_suite, 'string');
        assert.ok(r.tls.cipher_suite.startsWith('TLS_'), `cipher_suite ${r.tls.cipher_suite}`);
        assert.equal(r.tls.ocsp_stapled, false);
        const leaf = r.leaf;
        assert.ok(leaf, 'leaf missing');
        assert.match(leaf.subject, /tlswatch\.test/);
        assert.match(leaf.issuer, /tlswatch Test Intermediate CA/);
        assert.ok(leaf.sans.includes('tlswatch.test'), `sans ${JSON.stringify(leaf.sans)}`);
        assert.equal(Date.parse(leaf.not_after), Date.parse(sc.not_after), 'leaf.not_after');
        assert.ok(!Number.isNaN(Date.parse(leaf.not_before)), 'leaf.not_before');
        assert.equal(leaf.days_remaining, 89, 'days_remaining: 90 days minus an hour, rounded down');
        assert.equal(typeof leaf.serial, 'string');
        assert.match(leaf.sha256.replace(/:/g, ''), /^[0-9a-fA-F]{64}$/, `sha256 ${leaf.sha256}`);
        assert.equal(leaf.key, 'ECDSA P-256');
        assert.equal(leaf.signature_algorithm, 'ECDSA-SHA256');
        assert.equal(r.chain?.served, 2, 'chain.served: leaf + intermediate');
        assert.equal(r.chain.complete, true);
        assert.equal(r.chain.verified_path?.length, 3, `verified_path ${JSON.stringify(r.chain.verified_path)}`);
        assert.match(r.chain.verified_path[2], /tlswatch Test Root CA/);
        assert.equal(typeof r.timing_ms?.total, 'number');
        assert.ok(r.timing_ms.total > 0);
      });

      it('target forms: host:port with ip, 127.0.0.1:port (IP SAN), https:// URL', async () => {
        const ipsan = lab.scenarios.ip_san;
        const r1 = await checkTLS(client, { target: `127.0.0.1:${ipsan.port}` });
        assert.equal(r1.status, 'ok', `IP SAN: ${JSON.stringify(r1.findings)}`);
        assert.equal(r1.target.port, ipsan.port);
        const v = lab.scenarios.valid;
        const r2 = await checkTLS(client, { target: `https://tlswatch.test:${v.port}/some/path`, ip: '127.0.0.1' });
        assert.equal(r2.status, 'ok', `https URL: ${JSON.stringify(r2.findings)}`);
        assert.equal(r2.target.host, 'tlswatch.test');
        assert.equal(r2.target.port, v.port);
        const r3 = await checkTLS(client, { target: `tlswatch.test:${v.port}`, ip: '127.0.0.1', sni: 'tlswatch.test', timeout_ms: 5000 });
        assert.equal(r3.status, 'ok');
      });

      it('expired lab server: down, finding expired/critical, negative days_remaining', async () => {
        const r = await checkTLS(client, targetArgs(lab, 'expired'));
        assert.equal(r.status, 'down');
        assert.equal(r.reachable, true, 'the handshake completes at the protocol level');
        assert.equal(r.trusted, false);
        assert.equal(r.expiry_stage, 'expired');
        expectFinding(r, 'expired', 'critical');
        assert.ok(r.leaf, 'leaf is still reported for an expired certificate');
        assert.ok(r.leaf.days_remaining <= -3 && r.leaf.days_remaining >= -4,
          `days_remaining ${r.leaf.days_remaining} for a leaf expired 3 days ago`);
      });

      it('expiring in 5 days: trusted, critical, expiry_stage 7d, expiring_soon/critical', async () => {
        const r = await checkTLS(client, targetArgs(lab, 'expiring_5d'));
        assert.equal(r.trusted, true);
        assert.equal(r.reachable, true);
        assert.equal(r.status, 'critical');
        assert.equal(r.expiry_stage, '7d');
        expectFinding(r, 'expiring_soon', 'critical');
        assert.equal(r.leaf.days_remaining, 5);
      });

      const broken = [
        ['self_signed', 'self_signed', true],
        ['wrong_host', 'hostname_mismatch', true],
        ['untrusted_root', 'untrusted_root', true],
        ['missing_intermediate', 'incomplete_chain', true],
        ['refused', 'connection_refused', false],
        ['plain_http', 'not_tls', false],
        ['never_answers', 'timeout', false],
      ];
      for (const [scenario, code, reachable] of broken) {
        it(`${scenario}: down with ${code}/critical, reachable ${reachable}`, async () => {
          const r = await checkTLS(client, targetArgs(lab, scenario, { timeout_ms: 1500 }));
          assert.equal(r.status, 'down', `findings ${JSON.stringify(r.findings)}`);
          assert.equal(r.reachable, reachable);
          assert.equal(r.trusted, false);
          const f = expectFinding(r, code, 'critical');
          if (code === 'incomplete_chain') {
            assert.match(f.message, /AIA/, 'incomplete_chain says whether AIA could supply the intermediate');
          }
        });
      }
    });

    describe('other probing tools', () => {
      it('inspect_chain: served certificates in order and the verified path', async () => {
        const res = await callTool(client, 'inspect_chain', targetArgs(lab, 'valid'));
        assert.notEqual(res.isError, true, resultText(res));
        assert.ok(resultText(res).length > 0, 'text summary');
        const s = JSON.stringify(res.structuredContent);
        assert.ok(s.includes('tlswatch Test Intermediate CA'), 'the served intermediate is described');
        assert.ok(s.includes('tlswatch Test Root CA'), 'the verified path reaches the lab root');
        const res2 = await callTool(client, 'inspect_chain', targetArgs(lab, 'missing_intermediate'));
        assert.notEqual(res2.isError, true, resultText(res2));
        assert.ok(JSON.stringify(res2.structuredContent).includes('incomplete_chain') ||
          /missing|incomplete/i.test(JSON.stringify(res2.structuredContent)),
        `a missing intermediate is reported: ${JSON.stringify(res2.structuredContent).slice(0, 500)}`);
      });

      it('inspect_certificate: analyses pasted PEM', async (t) => {
        if (!tools.has('inspect_certificate')) return t.skip('inspect_certificate is not registered');
        const pem = fs.readFileSync(lab.pem.valid_chain, 'utf8');
        const props = tools.get('inspect_certificate').inputSchema.properties ?? {};
        const field = props.pem ? 'pem' : Object.keys(props)[0];
        const res = await callTool(client, 'inspect_certificate', { [field]: pem });
        assert.notEqual(res.isError, true, resultText(res));
        const s = JSON.stringify(res.structuredContent);
        assert.ok(s.includes('tlswatch.test'), 'leaf subject/SAN shown');
        assert.ok(s.includes('tlswatch Test Intermediate CA'), 'intermediate shown');
        const expired = fs.readFileSync(lab.pem.expired_leaf, 'utf8');
        const res2 = await callTool(client, 'inspect_certificate', { [field]: expired });
        assert.notEqual(res2.isError, true, resultText(res2));
        assert.ok(JSON.stringify(res2.structuredContent).includes('expired'), 'the expired leaf is flagged');
        await expectToolError(client, 'inspect_certificate', { [field]: 'not a certificate' }, new RegExp(field));
      });

      it('check_mcp_endpoint: live MCP server, not MCP, auth required', async (t) => {
        if (!tools.has('check_mcp_endpoint')) return t.skip('check_mcp_endpoint is not registered');
        const mcp = lab.scenarios.mcp;
        const props = tools.get('check_mcp_endpoint').inputSchema.properties ?? {};
        const urlField = props.url ? 'url' : 'target';
        const args = (p) => ({ [urlField]: `https://tlswatch.test:${mcp.port}${p}`, ip: '127.0.0.1' });
        const ok = await callTool(client, 'check_mcp_endpoint', args('/mcp'));
        assert.notEqual(ok.isError, true, resultText(ok));
        const okS = JSON.stringify(ok.structuredContent);
        assert.ok(okS.includes('labmcp'), `server name of the lab MCP server reported: ${okS.slice(0, 600)}`);
        assert.ok(!okS.includes('"not_mcp"'), 'a live MCP server is not not_mcp');
        const notMcp = await callTool(client, 'check_mcp_endpoint', args('/'));
        assert.notEqual(notMcp.isError, true, resultText(notMcp));
        expectFinding(notMcp.structuredContent, 'not_mcp', 'critical');
        const auth = await callTool(client, 'check_mcp_endpoint', args('/private/mcp'));
        assert.notEqual(auth.isError, true, resultText(auth));
        expectFinding(auth.structuredContent, 'mcp_auth_required', 'info');
      });

      it('scan_endpoints: one Report per target', async (t) => {
        if (!tools.has('scan_endpoints')) return t.skip('scan_endpoints is not registered');
        const schema = tools.get('scan_endpoints').inputSchema.properties?.targets;
        assert.ok(schema, 'scan_endpoints takes targets');
        // Each item is an object with the target fields, or a plain target
        // string (an item-level anyOf).
        const branches = schema.items?.anyOf ?? [schema.items];
        assert.ok(branches.some((b) => b?.type === 'object' && b.properties?.target), 'targets take objects with the target fields');
        assert.ok(branches.some((b) => b?.type === 'string'), 'targets take plain strings');
        const items = [targetArgs(lab, 'valid'), targetArgs(lab, 'never_answers', { timeout_ms: 1500 })];
        const progress = [];
        const res = await client.callTool({ name: 'scan_endpoints', arguments: { targets: items } }, undefined, {
          timeout: CALL_TIMEOUT_MS,
          onprogress: (p) => progress.push(p),
        });
        assert.notEqual(res.isError, true, resultText(res));
        // The silent target keeps the scan running for 1.5 s after the first
        // target's progress, so at least that one must arrive before the result.
        assert.ok(progress.length > 0, 'progress notifications while scan_endpoints runs (the request carries a progressToken)');
        for (const p of progress) {
          assert.equal(p.total, 2, `progress total ${JSON.stringify(p)}`);
          assert.ok(p.progress >= 1 && p.progress <= 2, `progress ${JSON.stringify(p)}`);
        }
        const reports = firstArray(res.structuredContent);
        assert.ok(Array.isArray(reports), `an array of reports: ${JSON.stringify(res.structuredContent).slice(0, 300)}`);
        assert.equal(reports.length, 2);
        const statuses = reports.map((r) => r.status ?? r.report?.status).sort();
        assert.deepEqual(statuses, ['down', 'ok']);
      });
    });

    describe('bad arguments give isError results naming the field', () => {
      it('check_tls without target', () => expectToolError(client, 'check_tls', {}, /target/));
      it('check_tls with an empty target', () => expectToolError(client, 'check_tls', { target: '' }, /target/));
      it('check_tls with timeout_ms over the maximum', () =>
        expectToolError(client, 'check_tls', { target: 'tlswatch.test:443', ip: '127.0.0.1', timeout_ms: 600000 }, /timeout_ms/));
      it('check_tls with an invalid ip', () =>
        expectToolError(client, 'check_tls', { target: 'tlswatch.test:443', ip: 'not-an-ip' }, /\bip\b/));
      it('check_tls with an out-of-range port', () =>
        expectToolError(client, 'check_tls', { target: 'tlswatch.test:99999', ip: '127.0.0.1' }, /port|target/));
      it('watch_endpoint with a bad schedule', () =>
        expectToolError(client, 'watch_endpoint', { ...targetArgs(lab, 'valid'), schedule: 'every banana' }, /schedule/));
      it('watch_endpoint with bad thresholds_days', () =>
        expectToolError(client, 'watch_endpoint', { ...targetArgs(lab, 'valid'), thresholds_days: [-5] }, /thresholds_days/));
      it('get_history for an unknown id', () =>
        expectToolError(client, 'get_history', { id: 'w_doesnotexist' }, /\bid\b|w_doesnotexist/));
      it('unwatch_endpoint with neither id nor target', () =>
        expectToolError(client, 'unwatch_endpoint', {}, /\bid\b|target/));
      it('the server keeps answering afterwards', async () => {
        assert.deepEqual(await client.ping({ timeout: CALL_TIMEOUT_MS }), {});
        await checkTLS(client, targetArgs(lab, 'valid'));
      });
    });

    describe('watches, resources and notifications', () => {
      it('resources, the watch template and the alert feed are listed', async () => {
        const res = await client.listResources(undefined, { timeout: CALL_TIMEOUT_MS });
        const uris = res.resources.map((r) => r.uri);
        for (const u of ['tlswatch://watches', 'tlswatch://expiring', 'tlswatch://alerts']) {
          assert.ok(uris.includes(u), `resources/list lacks ${u}: ${uris.join(', ')}`);
        }
        for (const r of res.resources) assert.ok(r.name, `resource ${r.uri} has no name`);
        const tpl = await client.listResourceTemplates(undefined, { timeout: CALL_TIMEOUT_MS });
        const tpls = tpl.resourceTemplates.map((r) => r.uriTemplate);
        for (const t of ['tlswatch://watches/{id}', 'tlswatch://alerts{?after,limit}']) {
          assert.ok(tpls.includes(t), `resources/templates/list lacks ${t}: ${tpls.join(', ')}`);
        }
      });

      it('subscribe to tlswatch://expiring, watch the 5-day server @every 1s: list_changed and updated arrive', async () => {
        await client.setLoggingLevel('info', { timeout: CALL_TIMEOUT_MS });
        await client.subscribeResource({ uri: 'tlswatch://expiring' }, { timeout: CALL_TIMEOUT_MS });
        const before = { lc: seen.listChanged.length, up: seen.updated.length };
        const res = await callTool(client, 'watch_endpoint', { ...targetArgs(lab, 'expiring_5d'), schedule: '@every 1s' });
        assert.notEqual(res.isError, true, resultText(res));
        const w = watchRecord(res.structuredContent);
        assert.ok(w, `watch_endpoint returns the watch with its id: ${JSON.stringify(res.structuredContent).slice(0, 300)}`);
        assert.match(w.id, /^w_/);
        watchIds.exp5 = w.id;
        assert.equal(w.schedule, '@every 1s');
        assert.deepEqual(w.thresholds_days, [30, 14, 7, 1], 'default thresholds');
        assert.equal(w.target.host, 'tlswatch.test');
        assert.equal(w.target.port, lab.scenarios.expiring_5d.port);
        assert.ok(w.last_report, 'watch_endpoint probes once now: last_report present');
        assert.equal(w.last_report.status, 'critical');
        assert.equal(w.last_report.expiry_stage, '7d');
        assert.equal(w.state, 'up', 'a successful first probe makes the watch up');
        assert.ok(!Number.isNaN(Date.parse(w.created_at)), 'created_at');
        await waitFor(() => seen.listChanged.length > before.lc,
          { timeoutMs: 10_000, what: 'notifications/resources/list_changed after adding a watch' });
        await waitFor(() => seen.updated.slice(before.up).some((u) => u.uri === 'tlswatch://expiring'),
          { timeoutMs: 30_000, what: 'notifications/resources/updated for tlswatch://expiring' });
      });

      it('an expired server watched @every 1s goes down after 3 failed probes', async () => {
        const res = await callTool(client, 'watch_endpoint', { ...targetArgs(lab, 'expired'), schedule: '@every 1s' });
        assert.notEqual(res.isError, true, resultText(res));
        const w = watchRecord(res.structuredContent);
        watchIds.expired = w.id;
        assert.equal(w.last_report.status, 'down');
        const down = await waitFor(async () => {
          const lw = await callTool(client, 'list_watches', {});
          const x = lw.structuredContent.watches.find((y) => y.id === w.id);
          return x?.state === 'down' ? x : null;
        }, { timeoutMs: 20_000, intervalMs: 500, what: 'the expired watch to become down' });
        assert.ok(down.consecutive_failures >= 3, `consecutive_failures ${down.consecutive_failures}`);
      });

      it('re-watching the same target updates the watch instead of adding one', async () => {
        const res = await callTool(client, 'watch_endpoint', { ...targetArgs(lab, 'valid'), schedule: '@every 1h' });
        assert.notEqual(res.isError, true, resultText(res));
        watchIds.valid = watchRecord(res.structuredContent).id;
        const res2 = await callTool(client, 'watch_endpoint', { ...targetArgs(lab, 'valid'), schedule: '@every 2h', thresholds_days: [20, 5] });
        assert.notEqual(res2.isError, true, resultText(res2));
        const w2 = watchRecord(res2.structuredContent);
        assert.equal(w2.id, watchIds.valid, 'same target, same watch');
        assert.equal(w2.schedule, '@every 2h');
        assert.deepEqual(w2.thresholds_days, [20, 5]);
      });

      it('list_watches shows every watch with its last status', async () => {
        const res = await callTool(client, 'list_watches', {});
        assert.notEqual(res.isError, true, resultText(res));
        const ws = res.structuredContent.watches;
        assert.ok(Array.isArray(ws), 'list_watches returns {watches: [...]}');
        const ids = ws.map((w) => w.id);
        for (const id of Object.values(watchIds)) assert.ok(ids.includes(id), `watch ${id} listed`);
        for (const w of ws) {
          assert.ok(['pending', 'up', 'down'].includes(w.state), `state ${w.state}`);
          assert.equal(typeof w.consecutive_failures, 'number');
          assert.ok(STATUSES.includes(w.last_report?.status), `last_report.status of ${w.id}`);
        }
      });

      it('list_expiring: expired and expiring soonest first, the 90-day server left out', async () => {
        const res = await callTool(client, 'list_expiring', {});
        assert.notEqual(res.isError, true, resultText(res));
        const sc = res.structuredContent;
        assert.equal(sc.within_days, 30);
        const ids = sc.watches.map((w) => w.id);
        assert.ok(ids.includes(watchIds.expired), 'the expired watch is listed');
        assert.ok(ids.includes(watchIds.exp5), 'the 5-day watch is listed');
        assert.ok(!ids.includes(watchIds.valid), 'the 90-day watch is not within 30 days');
        assert.ok(ids.indexOf(watchIds.expired) < ids.indexOf(watchIds.exp5), 'soonest expiry first');
        const r100 = await callTool(client, 'list_expiring', { within_days: 100 });
        assert.equal(r100.structuredContent.within_days, 100);
        assert.ok(r100.structuredContent.watches.some((w) => w.id === watchIds.valid), 'within 100 days includes the 90-day watch');
      });

      it('resources tlswatch://watches, tlswatch://watches/{id} and tlswatch://expiring read as JSON', async () => {
        const all = await readJSONResource(client, 'tlswatch://watches');
        assert.ok(Array.isArray(all.json.watches), 'tlswatch://watches has watches');
        assert.ok(all.json.watches.some((w) => w.id === watchIds.exp5));
        const one = await readJSONResource(client, `tlswatch://watches/${watchIds.exp5}`);
        const w = watchRecord(one.json);
        assert.ok(w, `tlswatch://watches/{id} shows the watch: ${one.content.text.slice(0, 300)}`);
        assert.equal(w.id, watchIds.exp5);
        assert.equal(w.last_report?.status, 'critical');
        assert.equal(w.last_report.leaf.days_remaining, 5);
        const exp = await readJSONResource(client, 'tlswatch://expiring');
        assert.equal(exp.json.within_days, 30);
        assert.ok(exp.json.watches.some((x) => x.id === watchIds.exp5));
      });

      it('get_history returns at most limit probe results of the watch', async () => {
        await sleep(1500);
        const res = await callTool(client, 'get_history', { id: watchIds.exp5, limit: 2 });
        assert.notEqual(res.isError, true, resultText(res));
        const hist = firstArray(res.structuredContent);
        assert.ok(Array.isArray(hist), `get_history returns a list: ${JSON.stringify(res.structuredContent).slice(0, 300)}`);
        assert.equal(hist.length, 2, 'the 1s schedule has probed at least twice');
        for (const h of hist) {
          const rep = h.status ? h : h.report;
          assert.equal(rep?.status, 'critical', `history entry ${JSON.stringify(h).slice(0, 200)}`);
        }
        const one = await callTool(client, 'get_history', { id: watchIds.exp5, limit: 1 });
        assert.equal(firstArray(one.structuredContent).length, 1);
      });

      it('a rotated certificate sends notifications/resources/updated for tlswatch://watches/{id}', async () => {
        const res = await callTool(client, 'watch_endpoint', { ...targetArgs(lab, 'rotating'), schedule: '@every 1s' });
        assert.notEqual(res.isError, true, resultText(res));
        const id = watchRecord(res.structuredContent).id;
        watchIds.rotating = id;
        const uri = `tlswatch://watches/${id}`;
        const mark = seen.updated.length;
        await client.subscribeResource({ uri }, { timeout: CALL_TIMEOUT_MS });
        await waitFor(() => seen.updated.slice(mark).some((u) => u.uri === uri),
          { timeoutMs: 30_000, what: `notifications/resources/updated for ${uri} (the lab rotates the leaf every 2s)` });
        await client.unsubscribeResource({ uri }, { timeout: CALL_TIMEOUT_MS });
      });

      it('unwatch_endpoint by id and by target removes watches and sends list_changed', async () => {
        const lc = seen.listChanged.length;
        const r1 = await callTool(client, 'unwatch_endpoint', { id: watchIds.rotating });
        assert.notEqual(r1.isError, true, resultText(r1));
        const r2 = await callTool(client, 'unwatch_endpoint', { target: lab.scenarios.expired.target });
        assert.notEqual(r2.isError, true, resultText(r2));
        const ws = (await callTool(client, 'list_watches', {})).structuredContent.watches.map((w) => w.id);
        assert.ok(!ws.includes(watchIds.rotating), 'removed by id');
        assert.ok(!ws.includes(watchIds.expired), 'removed by target');
        assert.ok(ws.includes(watchIds.exp5), 'others stay');
        await waitFor(() => seen.listChanged.length > lc, { timeoutMs: 10_000, what: 'list_changed after unwatch' });
        await expectToolError(client, 'get_history', { id: watchIds.rotating }, /\bid\b|w_/);
      });

      it('alerts went out as MCP log messages (warning/critical)', async () => {
        const alerts = seen.logs.filter((l) => l.level === 'warning' || l.level === 'critical');
        assert.ok(alerts.length > 0, `no warning/critical notifications/message seen (got ${seen.logs.length} log messages)`);
      });
    });
  });
}
