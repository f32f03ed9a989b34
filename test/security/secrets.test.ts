import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import { createLogger } from '../../src/gateway.js';
import { packageRoot } from '../../src/paths.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { PolicyRepo } from '../helpers/policy-repo.js';
import { RawMcp } from '../helpers/raw-mcp.js';
import { type Hostile, type McpAnswer, mcpSession, startHostile } from './hostile-upstream.js';

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c0d9e';
const ENV = 'GITGATE_TEST_UPSTREAM_KEY';
const STDIO_FIXTURE = path.resolve(import.meta.dirname, '../fixtures/hostile-stdio.mjs');

/** Each character as a JSON \u escape: the same string once parsed, other bytes on the wire. */
const jsonEscaped = (s: string) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
const JWT = /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/;

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? (f === '.git' ? [] : allFiles(p)) : [p];
  });
}

/**
 * An upstream that echoes what gitgate sent it (its static API key, the JIT
 * credential) back in every way it can: HTTP error bodies, JSON-RPC errors,
 * results, escaped, encoded, as object keys, on stderr. None of it may reach the
 * caller, the audit log or gitgate's logs.
 */
describe('secrets gitgate sent an upstream never come back out', () => {
  let hostile: Hostile;
  let gw: TestGateway;
  let token: string;
  const logs: string[] = [];
  const answers: McpAnswer[] = [];

  beforeAll(async () => {
    process.env[ENV] = SECRET;
    hostile = await startHostile((call, res) => {
      const h = call.msg.params?.name === undefined ? {} : call.headers;
      const auth = String(h.authorization ?? '');
      const jwt = auth.replace(/^Bearer /, '');
      const id = call.msg.id;
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      switch (call.msg.params?.name) {
        case 'err-500-text':
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(
            `upstream failed for jane@example.com; request headers: x-api-key=${String(h['x-api-key'])} authorization=${auth}`,
          );
          return;
        case 'err-500-json-escaped':
          return json(500, `{"message":"key ${jsonEscaped(SECRET)} sig ${jsonEscaped(jwt.split('.')[2]!)}"}`);
        case 'err-500-long':
          // The secret straddles the 200 characters an error keeps: cut before scrubbing, half of it would show.
          return json(502, { message: `${'x'.repeat(190)}${SECRET}` });
        case 'rpc-error':
          return json(200, {
            jsonrpc: '2.0',
            id,
            error: { code: -32000, message: `bad key ${String(h['x-api-key'])}`, data: { headers: h } },
          });
        case 'result-echo':
          return json(
            200,
            {
              jsonrpc: '2.0',
              id,
              result: {
                content: [
                  { type: 'text', text: `headers ${JSON.stringify(h)}` },
                  {
                    type: 'text',
                    text: `dump ${Buffer.from(`x-api-key: ${SECRET}\r\nauthorization: ${auth}`).toString('base64')}`,
                  },
                  { type: 'text', text: `url ?auth=${encodeURIComponent(auth)}&sig=${jwt.split('.')[2]!}` },
                ],
                structuredContent: { [SECRET]: 'as a key', nested: [[[{ k: `Bearer ${jwt}` }]]] },
              },
            },
            { 'x-echo-key': SECRET },
          );
        case 'sse-echo':
          res.writeHead(200, { 'content-type': 'text/event-stream', 'x-echo-key': SECRET });
          res.write(
            `data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1, message: `using ${SECRET}` } })}\n\n`,
          );
          res.end(
            `data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: `done with ${jwt}` }] } })}\n\n`,
          );
          return;
        default:
          return json(200, { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'fine' }] } });
      }
    });
    const data = structuredClone(TEST_POLICY_DATA) as { upstreams: Record<string, unknown> };
    data.upstreams.hostile = data.upstreams.http;
    data.upstreams.child = data.upstreams.http;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString());
        done();
      },
    });
    gw = await startGateway({
      policyDir: await makePolicyDir(data),
      upstreams: {
        hostile: { url: hostile.url, secret: { header: 'x-api-key', fromEnv: ENV } },
        child: {
          stdio: { command: process.execPath, args: [STDIO_FIXTURE] },
          secret: { envVar: 'HOSTILE_KEY', fromEnv: ENV },
          credential: { meta: true },
        },
      },
      options: { logger: pino({ level: 'debug' }, sink) },
    });
    token = await gw.token('alice', ['eng']);
  });
  afterAll(async () => {
    await gw?.close().catch(() => undefined);
    await hostile?.close();
    delete process.env[ENV];
  });

  /** Every credential gitgate sent the hostile upstream, and the secret. */
  const sentValues = () => {
    const tokens = hostile.received
      .map((r) => String(r.headers.authorization ?? '').replace(/^Bearer /, ''))
      .filter((t) => t !== '');
    expect(tokens.length).toBeGreaterThan(0);
    return [SECRET, ...tokens, ...tokens.map((t) => t.split('.')[2]!)];
  };
  const expectClean = (where: string, text: string) => {
    for (const v of sentValues()) expect(text.includes(v), `${where} holds a secret gitgate sent`).toBe(false);
    expect(text, where).not.toMatch(JWT);
    // The base64 header dump: the secret's part of it.
    expect(
      text.includes(Buffer.from(`x-api-key: ${SECRET}`).toString('base64').slice(16, 40)),
      `${where} holds the base64 of the secret`,
    ).toBe(false);
  };

  const call = async (upstream: string, name: string) => {
    const s = await mcpSession(gw.url, upstream, token);
    const r = await s.call(name);
    answers.push(r);
    return r;
  };

  it('an HTTP 500 echoing request headers: the error names the failure without the key or the credential, masked by the decision', async () => {
    const r = await call('hostile', 'err-500-text');
    expect(r.last?.error?.data?.gitgate).toBe('UPSTREAM_UNAVAILABLE');
    expect(r.last?.error?.message).toContain(
      'upstream hostile answered HTTP 500: upstream failed for [redacted:email]; request headers: x-api-key=[redacted:secret] authorization=[redacted:secret]',
    );
    expectClean('error', r.text);
  });

  it('a secret written as JSON \\u escapes, or cut by the error length, is still found', async () => {
    for (const name of ['err-500-json-escaped', 'err-500-long']) {
      const r = await call('hostile', name);
      expect(r.last?.error?.message).toContain('[redacted:');
      expectClean(name, r.text);
      expect(r.text).not.toContain(SECRET.slice(0, 10));
    }
  });

  it('a JSON-RPC error, a result, SSE events and response headers echoing them are scrubbed (keys, nesting, base64, URL encoding)', async () => {
    const err = await call('hostile', 'rpc-error');
    expect(err.last?.error?.message).toBe('bad key [redacted:secret]');
    expectClean('rpc error', err.text);
    const res = await call('hostile', 'result-echo');
    expect(JSON.stringify(res.last?.result)).toContain('[redacted:secret]');
    expect((res.last!.result as { structuredContent: Record<string, unknown> }).structuredContent).toHaveProperty(
      ['[redacted:secret]'],
      'as a key',
    );
    expectClean('result', res.text);
    const sse = await call('hostile', 'sse-echo');
    expect(sse.messages).toHaveLength(2);
    expectClean('sse', sse.text);
    for (const r of [res, sse]) expectClean('response headers', JSON.stringify([...r.headers]));
  });

  it('a stdio child echoing its env secret and its _meta credential, and logging them on stderr before dying', async () => {
    const echo = await call('child', 'echo-meta');
    expect(JSON.stringify(echo.last?.result)).toContain('[redacted:secret]');
    expectClean('stdio result', echo.text);
    const died = await call('child', 'stderr-and-exit');
    expect(died.last?.error?.message).toMatch(/exited \(code 3\); stderr: fatal: key=\[redacted:secret\] meta=/);
    expectClean('stdio exit error', died.text);
    const sig = await call('child', 'stderr-signature-and-exit');
    expect(sig.last?.error?.message).toMatch(/exited \(code 4\); stderr: fatal: bad signature \[redacted:secret\]$/);
  });

  it("nothing of it reached the audit log or gitgate's logs", async () => {
    await gw.close();
    const repo = path.join(gw.dataDir, 'audit');
    let records = '';
    for await (const r of readRecords(repo)) records += `${JSON.stringify(r)}\n`;
    expect(records).toContain('[redacted:secret]');
    expectClean('audit records', records);
    expectClean(
      'audit files',
      allFiles(gw.dataDir)
        .filter((f) => !f.includes(`${path.sep}keys${path.sep}`))
        .map((f) => readFileSync(f, 'latin1'))
        .join('\n'),
    );
    expect(logs.join('').length).toBeGreaterThan(0);
    expectClean('logs', logs.join(''));
    for (const a of answers) expectClean('answers', a.text);
  });
});

/** A caller's own secrets in `arguments` reach the tool as sent, but the default policy keeps them out of the audit repo. */
describe('no credential a caller sends reaches the audit repo, wherever in the request it is', () => {
  it('in _meta, in a uri, in input responses, in the reasons that quote them, and in the call of an upstream whose policy masks nothing', async () => {
    const GH = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789';
    const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2lnbmF0dXJlLW9mLW1pbmU';
    const hostile = await startHostile((call, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const result =
        call.msg.method === 'resources/read'
          ? { contents: [{ uri: 'x', text: 'ok' }] }
          : { content: [{ type: 'text', text: 'ok' }] };
      res.end(JSON.stringify({ jsonrpc: '2.0', id: call.msg.id, result }));
    });
    // `other` is routed but not named by the policy's data: it masks nothing there (and denies).
    const gw = await startGateway({
      policyDir: path.join(packageRoot, 'policies'),
      upstreams: { demo: { url: hostile.url }, other: { url: hostile.url } },
    });
    try {
      const bob = new RawMcp(`${gw.url}/mcp/demo`, await gw.token('bob'));
      await bob.initialize();
      const meta = await bob.post({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: `args ${GH}` }, _meta: { 'x/auth': `meta ${GH}`, 'x/jwt': JWT } },
      });
      expect(meta.status).toBe(200);
      const responses = await bob.post({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: {
          name: 'echo',
          arguments: { message: 'hi' },
          inputResponses: { q: { action: 'accept', content: { pat: GH } } },
        },
      });
      expect(responses.status).toBe(200);
      const alice = new RawMcp(`${gw.url}/mcp/demo`, await gw.token('alice', ['eng']));
      await alice.initialize();
      const uri = await alice.post({
        jsonrpc: '2.0',
        id: 3,
        method: 'resources/read',
        params: { uri: `https://api.example/x?access_token=${JWT}` },
      });
      expect(uri.status).toBe(200);
      const other = new RawMcp(`${gw.url}/mcp/other`, await gw.token('alice', ['eng']));
      await other.initialize().catch(() => undefined);
      await other.post({
        jsonrpc: '2.0',
        id: 4,
        method: 'tools/call',
        params: { name: 'echo', arguments: { token: GH } },
      });
      await gw.close();
      let records = '';
      for await (const rec of readRecords(path.join(gw.dataDir, 'audit'))) records += `${JSON.stringify(rec)}\n`;
      expect(records).toContain('[redacted:github_token]');
      expect(records).toContain('[redacted:jwt]');
      expect(records.includes(GH), 'a github token in the audit repo').toBe(false);
      expect(records.includes(JWT), 'a JWT in the audit repo').toBe(false);
    } finally {
      await gw.close().catch(() => undefined);
      await hostile.close();
    }
  });
});

describe('the default policy masks recorded arguments', () => {
  it('a github token, a JWT, a bearer token, an AWS secret and a PEM key in arguments are masked in the record, not in the call', async () => {
    const received: string[] = [];
    const hostile = await startHostile((call, res) => {
      received.push(JSON.stringify(call.msg.params?.arguments));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: call.msg.id, result: { content: [{ type: 'text', text: 'ok' }] } }));
    });
    const gw = await startGateway({
      policyDir: path.join(packageRoot, 'policies'),
      upstreams: { demo: { url: hostile.url } },
    });
    try {
      const own = {
        gh: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789',
        jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2lnbmF0dXJlLW9mLW1pbmU',
        auth: 'Bearer abcdefghijklmnopqrstuvwxyz012345',
        aws: 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        pem: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----',
      };
      const s = await mcpSession(gw.url, 'demo', await gw.token('bob'));
      const r = await s.call('echo', { message: JSON.stringify(own) });
      expect(r.last?.result).toEqual({ content: [{ type: 'text', text: 'ok' }] });
      // The tool got them as sent.
      expect(received.at(-1)).toBe(JSON.stringify({ message: JSON.stringify(own) }));
      await gw.close();
      let records = '';
      for await (const rec of readRecords(path.join(gw.dataDir, 'audit'))) records += `${JSON.stringify(rec)}\n`;
      expect(records).toContain('[redacted:github_token]');
      for (const [what, v] of Object.entries(own))
        expect(
          records.includes(
            what === 'aws'
              ? 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
              : what === 'pem'
                ? 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
                : v,
          ),
          `${what} in the audit record`,
        ).toBe(false);
    } finally {
      await gw.close().catch(() => undefined);
      await hostile.close();
    }
  });
});

describe("the default policy masks credentials in an upstream's notifications and requests", () => {
  it('a log line, a progress message and a sampling request carrying credentials reach neither the caller nor the record', async () => {
    const GH = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789';
    const AWS = 'AKIAIOSFODNN7EXAMPLE';
    const hostile = await startHostile((call, res) => {
      const token = (call.msg.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
      const ev = (m: unknown) => `event: message\ndata: ${JSON.stringify(m)}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(ev({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `key ${GH}` } }));
      res.write(
        ev({
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: token, progress: 1, message: `uploading with ${AWS}` },
        }),
      );
      res.write(
        ev({
          jsonrpc: '2.0',
          id: 'up-1',
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: `use ${GH}` } }], maxTokens: 5 },
        }),
      );
      res.end(ev({ jsonrpc: '2.0', id: call.msg.id, result: { content: [{ type: 'text', text: 'ok' }] } }));
    });
    const gw = await startGateway({
      policyDir: path.join(packageRoot, 'policies'),
      upstreams: { demo: { url: hostile.url } },
    });
    try {
      const s = await mcpSession(gw.url, 'demo', await gw.token('bob'));
      const r = await s.call('echo', { message: 'hi' });
      expect(r.last?.result).toEqual({ content: [{ type: 'text', text: 'ok' }] });
      expect(r.messages.length).toBeGreaterThanOrEqual(3);
      // Before: the default mask covered $.result, $.error and $.params.arguments only.
      expect(r.text).not.toContain(GH);
      expect(r.text).toContain('[redacted:github_token]');
      await gw.close();
      let records = '';
      for await (const rec of readRecords(path.join(gw.dataDir, 'audit'))) records += `${JSON.stringify(rec)}\n`;
      expect(records).not.toContain(GH);
      expect(records).not.toContain(AWS);
    } finally {
      await gw.close().catch(() => undefined);
      await hostile.close();
    }
  });
});

describe("gitgate's own logs", () => {
  it('redact authorization, cookies and every header a static secret travels in', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('info', ['X-Upstream-Key'], sink);
    log.info(
      {
        req: {
          headers: { authorization: `Bearer ${SECRET}`, cookie: SECRET, 'x-upstream-key': SECRET, 'x-api-key': SECRET },
        },
      },
      'request',
    );
    log.info({ headers: { 'x-upstream-key': SECRET }, token: SECRET, upstream: { secret: SECRET } }, 'upstream call');
    expect(lines).toHaveLength(2);
    expect(lines.join('')).not.toContain(SECRET);
    expect(lines.join('')).toContain('[redacted]');
  });
});

describe('an upstream that negotiates a protocol version made of the secret', () => {
  it('is refused without the secret in the error', async () => {
    const hostile = await startHostile(() => undefined, {
      protocolVersion: (call) => `x-api-key=${String(call.headers['x-api-key'])}`,
    });
    process.env[ENV] = SECRET;
    const gw = await startGateway({
      upstreams: { http: { url: hostile.url, secret: { header: 'x-api-key', fromEnv: ENV } } },
    });
    try {
      const res = await fetch(`${gw.url}/mcp/http`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await gw.token('alice', ['eng'])}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
        }),
      });
      const text = await res.text();
      expect(text).toContain('negotiated protocol x-api-key=[redacted:secret]');
      expect(text).not.toContain(SECRET);
    } finally {
      await gw.close();
      await hostile.close();
      delete process.env[ENV];
    }
  });
});

describe("a policy repo URL's credentials", () => {
  it('appear in neither /readyz, /metrics nor the logs, a refused commit included', async () => {
    const TOKEN = 'ghp_policyRepoToken0123456789abcdefABCDEF';
    const repo = await PolicyRepo.create();
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    // git takes a file:// URL with userinfo as it takes an https:// one with a token in it.
    const url = `file://x-access-token:${TOKEN}@localhost${repo.dir}`;
    const gw = await startGateway({
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      policyRepo: { url, pollSeconds: 3600 },
      options: { logger: pino({ level: 'info' }, sink), checkUpstreams: false },
    });
    try {
      await repo.write('policies/gitgate/broken.rego', 'package gitgate\n\nthis is not rego\n').commit('a bad change');
      await gw.gw.sync!.sync();
      const readyz = await (await fetch(`${gw.url}/readyz`)).text();
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      expect(readyz).toContain('"refused"');
      expect(readyz).toContain('[redacted]@localhost');
      for (const [where, text] of [
        ['/readyz', readyz],
        ['/metrics', metrics],
        ['the log', lines.join('')],
      ] as const)
        expect(text, where).not.toContain(TOKEN);
    } finally {
      await gw.close();
    }
  });
});
