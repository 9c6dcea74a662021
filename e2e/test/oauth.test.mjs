// `serve --auth-issuer`: the official TypeScript SDK client signs in by
// itself with its client-credentials provider. On the first 401 it reads the
// challenge's resource_metadata, fetches tlswatch's protected-resource
// metadata and the issuer's RFC 8414 metadata, and asks the token endpoint
// for a token bound to tlswatch's canonical URI (RFC 8707 resource). On a 403
// insufficient_scope it signs in once more, then gives up.
// The authorization server is e2e/authserver (plain http on loopback).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { CALL_TIMEOUT_MS, callTool, startAuthServer, startHttpServer } from './helpers.mjs';

const READ = 'tlswatch:read';
const WRITE = 'tlswatch:write';
const CLIENTS = {
  'dashboard': { secret: 'dashboard-s3cret', scopes: [READ] },
  'ops-bot': { secret: 'ops-bot-s3cret', scopes: [READ, WRITE] },
};

/** An SDK client signed in as one of CLIENTS through its OAuth provider. */
async function oauthClient(url, issuer, id) {
  const provider = new ClientCredentialsProvider({
    clientId: id, clientSecret: CLIENTS[id].secret, expectedIssuer: issuer,
  });
  const client = new Client({ name: `oauth-e2e-${id}`, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await client.connect(transport);
  return {
    client, provider,
    async close() {
      await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
    },
  };
}

/** The claims of a JWT, unverified (the test only reads what it asked for). */
function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

describe('serve --auth-issuer with the SDK OAuth client', () => {
  let idp;
  let srv;
  before(async () => {
    idp = await startAuthServer(CLIENTS);
    srv = await startHttpServer({ extraArgs: ['--auth-issuer', idp.issuer] });
  });
  after(async () => {
    await srv?.stop();
    await idp?.stop();
  });

  it('publishes RFC 9728 metadata and a challenge pointing at it', async () => {
    const mdURL = `http://127.0.0.1:${srv.port}/.well-known/oauth-protected-resource/mcp`;
    const md = await (await fetch(mdURL)).json();
    assert.equal(md.resource, srv.url);
    assert.deepEqual(md.authorization_servers, [idp.issuer]);
    assert.deepEqual(md.scopes_supported, [READ, WRITE]);
    assert.deepEqual(md.bearer_methods_supported, ['header']);
    const r = await fetch(srv.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    await r.body?.cancel();
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), `Bearer scope="${READ}", resource_metadata="${mdURL}"`);
  });

  it('a read-only client lists and calls read tools, and cannot add a watch', async () => {
    const c = await oauthClient(srv.url, idp.issuer, 'dashboard');
    try {
      const tok = claims(c.provider.tokens().access_token);
      assert.equal(tok.aud, srv.url, 'the token is bound to the canonical URI');
      assert.equal(tok.scope, READ, 'all this client may have');
      const tools = (await c.client.listTools(undefined, { timeout: CALL_TIMEOUT_MS })).tools.map((t) => t.name);
      assert.ok(tools.includes('watch_endpoint'), 'the full tool list (not --read-only)');
      const res = await callTool(c.client, 'list_watches');
      assert.ok(!res.isError, JSON.stringify(res));
      // 403 insufficient_scope: the SDK signs in again for the scope the
      // challenge names, gets the same read-only token, and gives up.
      await assert.rejects(callTool(c.client, 'watch_endpoint', { target: '127.0.0.1:1' }), /invalid_scope|403|scope/i);
    } finally {
      await c.close();
    }
  });

  it('a read+write client adds and removes a watch', async () => {
    const c = await oauthClient(srv.url, idp.issuer, 'ops-bot');
    try {
      assert.equal(claims(c.provider.tokens().access_token).scope, `${READ} ${WRITE}`);
      const res = await callTool(c.client, 'watch_endpoint', { target: '127.0.0.1:1', schedule: '@every 1h' });
      assert.ok(!res.isError, JSON.stringify(res.content));
      const id = res.structuredContent.id;
      const gone = await callTool(c.client, 'unwatch_endpoint', { id });
      assert.ok(!gone.isError, JSON.stringify(gone.content));
    } finally {
      await c.close();
    }
  });
});

describe('serve --auth-issuer --read-only with the SDK OAuth client', () => {
  let idp;
  let srv;
  before(async () => {
    idp = await startAuthServer(CLIENTS);
    srv = await startHttpServer({ extraArgs: ['--auth-issuer', idp.issuer, '--read-only'] });
  });
  after(async () => {
    await srv?.stop();
    await idp?.stop();
  });

  it('lists only read tools, whatever the token may do', async () => {
    const c = await oauthClient(srv.url, idp.issuer, 'ops-bot');
    try {
      const tools = (await c.client.listTools(undefined, { timeout: CALL_TIMEOUT_MS })).tools;
      const names = tools.map((t) => t.name);
      assert.ok(names.includes('check_tls') && names.includes('list_watches'), names.join(','));
      assert.ok(!names.includes('watch_endpoint') && !names.includes('unwatch_endpoint'), names.join(','));
      for (const t of tools) assert.equal(t.annotations?.readOnlyHint, true, `${t.name} is read-only`);
    } finally {
      await c.close();
    }
  });
});
