import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { type McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { canonicalJson } from '../../src/canonical-json.js';
// @ts-expect-error plain JS fixture
import { LEAK_TEXT, startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';

interface Cred {
  payload: {
    iss: string;
    aud: string;
    sub: string;
    scope: string;
    jti: string;
    iat: number;
    exp: number;
    act: { sub: string };
    args_sha256?: string;
    uri_sha256?: string;
    prompt?: string;
    task_id?: string;
  };
  token: string;
  method: string;
}
interface Upstream {
  url: string;
  received: { message: { method?: string }; headers: Record<string, string> }[];
  credentials: Cred[];
  close(): Promise<void>;
}

const ISSUER = 'https://gitgate.test';
const AUDIENCE = 'https://upstream.test/mcp';
const MASK = [
  { path: '$.result', detectors: ['email', 'aws_access_key'] },
  { path: '$.params', detectors: ['email'] },
];
const upstreamData = (extra: object = {}) => ({
  full_access_groups: ['eng'],
  public_tools: ['echo', 'leak', 'profile', 'mutable', 'mutate', 'slow'],
  high_risk_tools: {},
  mask: MASK,
  credential_ttl_seconds: 30,
  ...extra,
});

describe('the gateway enforces what the policy decides', () => {
  const verify = { jwksUrl: '', issuer: ISSUER, audience: AUDIENCE };
  let upstream: Upstream;
  let gw: TestGateway;

  beforeAll(async () => {
    process.env.GITGATE_TEST_API_KEY = 'sk-test-static-secret';
    upstream = await startHttpServer(verify);
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: { http: upstreamData(), limited: upstreamData({ rate: { calls: 3, window_seconds: 3600 } }) },
    });
    gw = await startGateway({
      policyDir,
      upstreams: {
        http: {
          url: upstream.url,
          audience: AUDIENCE,
          secret: { header: 'x-api-key', fromEnv: 'GITGATE_TEST_API_KEY' },
        },
        limited: { url: upstream.url, audience: AUDIENCE },
      },
      credentials: { issuer: ISSUER, maxTtlSeconds: 60 },
    });
    verify.jwksUrl = `${gw.url}/.well-known/jwks.json`;
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('a caller never sees a tool it may not call, and calling it is refused', async () => {
    const bob = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const names = (await bob.client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(['echo', 'leak', 'mutable', 'mutate', 'profile', 'slow']);
    const err = (await bob.client.callTool({ name: 'secret', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-32010);
    expect(err.message).toContain('tools/call of secret denied');
    const alice = await connectClient(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
    expect((await alice.client.listTools()).tools.map((t) => t.name)).toContain('secret');
    // resources and prompts are for full-access callers only in this policy
    expect((await bob.client.listResources()).resources).toEqual([]);
    expect((await bob.client.listPrompts()).prompts).toEqual([]);
    expect((await alice.client.listPrompts()).prompts.map((p) => p.name)).toEqual(['greet']);
    await bob.close();
    await alice.close();
  });

  it('masks emails and AWS keys in a JSON response (an email inside a URL is not an address)', async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const res = await c.client.callTool({ name: 'leak', arguments: {} });
    expect(res.content).toEqual([
      {
        type: 'text',
        text: 'owner: [redacted:email], key: [redacted:aws_access_key], docs: https://example.com/u/bob@example.org',
      },
    ]);
    expect(LEAK_TEXT).toContain('jane.doe@example.com');
    await c.close();
  });

  it('masks each SSE event too: progress notifications and the final response', async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const progress: string[] = [];
    const res = await c.client.callTool({ name: 'leak', arguments: { steps: 2 } }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ''),
    });
    expect(progress).toEqual(['mail [redacted:email] step 1', 'mail [redacted:email] step 2']);
    expect(JSON.stringify(res.content)).not.toContain('jane.doe@example.com');
    expect(JSON.stringify(res.content)).not.toContain('AKIAIOSFODNN7EXAMPLE');
    await c.close();
  });

  it('replaces structured content that masking would make invalid, and says so', async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    await c.client.listTools(); // the SDK client validates structuredContent against the listed output schema
    const res = await c.client.callTool({ name: 'profile', arguments: {} });
    expect(res.structuredContent).toEqual({ email: 'redacted@redacted.invalid', name: 'redacted' });
    expect(JSON.stringify(res.content)).toContain('placeholder');
    expect(JSON.stringify(res)).not.toContain('jane.doe@example.com');
    await c.close();
  });

  it('sends a fresh, short-lived, single-call credential with every request, never the client token', async () => {
    const token = await gw.token('bob');
    const c = await connectClient(`${gw.url}/mcp/http`, token);
    const before = upstream.credentials.length;
    await c.client.callTool({ name: 'echo', arguments: { message: 'one' } });
    await c.client.callTool({ name: 'echo', arguments: { message: 'two' } });
    const calls = upstream.credentials.slice(before).filter((x) => x.method === 'tools/call');
    expect(calls).toHaveLength(2);
    const [a, b] = calls.map((x) => x.payload);
    expect(a!.jti).not.toBe(b!.jti);
    for (const [p, message] of [
      [a!, 'one'],
      [b!, 'two'],
    ] as const) {
      expect(p).toMatchObject({
        iss: ISSUER,
        aud: AUDIENCE,
        sub: 'bob',
        act: { sub: 'gitgate' },
        scope: 'tools/call:echo',
      });
      expect(p.exp - p.iat).toBe(30);
      expect(p.args_sha256).toBe(createHash('sha256').update(canonicalJson({ message })).digest('base64url'));
    }
    for (const r of upstream.received) {
      expect(r.headers.authorization).not.toContain(token);
      expect(r.headers['x-api-key'] ?? 'sk-test-static-secret').toBe('sk-test-static-secret');
    }
    expect(upstream.received.some((r) => r.headers['x-api-key'] === 'sk-test-static-secret')).toBe(true);
    await c.close();
  });

  it("binds each credential to what its call names: a resource's uri, a prompt's name and arguments", async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
    const before = upstream.credentials.length;
    await c.client.readResource({ uri: 'test://items/7' });
    await c.client.getPrompt({ name: 'greet', arguments: { name: 'Ann' } });
    const got = upstream.credentials.slice(before);
    const read = got.find((x) => x.method === 'resources/read')!.payload;
    expect(read).toMatchObject({
      scope: 'resources/read',
      uri_sha256: createHash('sha256').update('test://items/7').digest('base64url'),
    });
    expect(read.args_sha256).toBeUndefined();
    const prompt = got.find((x) => x.method === 'prompts/get')!.payload;
    expect(prompt).toMatchObject({ prompt: 'greet' });
    expect(prompt.args_sha256).toBe(
      createHash('sha256')
        .update(canonicalJson({ name: 'Ann' }))
        .digest('base64url'),
    );
    expect(prompt.uri_sha256).toBeUndefined();
    // A task's id, for whatever the upstream then says of the task.
    await c.client.request({ method: 'tasks/get', params: { taskId: 'task-7' } }, z.any()).catch(() => undefined);
    const task = upstream.credentials.slice(before).find((x) => x.method === 'tasks/get')?.payload;
    expect(task).toMatchObject({ scope: 'tasks/get', task_id: 'task-7' });
    await c.close();
  });

  it('a replayed credential is refused by the upstream', async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    await c.client.callTool({ name: 'echo', arguments: { message: 'x' } });
    const used = upstream.credentials.at(-1)!;
    const replay = await fetch(upstream.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${used.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'thief', version: '1' } },
      }),
    });
    expect(replay.status).toBe(401);
    expect(await replay.text()).toContain('replayed credential');
    await c.close();
  });

  it('publishes its keys; a rotated-in key is published before it signs, the old one until its tokens expire', async () => {
    const jwks = async () =>
      (
        (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as {
          keys: { kid: string; crv: string; d?: string }[];
        }
      ).keys;
    const before = await jwks();
    expect(before).toHaveLength(1);
    expect(before[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(before[0]!.d).toBeUndefined();
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const kidOfLastCall = () =>
      JSON.parse(Buffer.from(upstream.credentials.at(-1)!.token.split('.')[0]!, 'base64url').toString()).kid as string;
    // Rotate with a pending activation: both keys are published, the old one still signs.
    const next = await gw.gw.credentials.keys.rotate(Date.now(), 60_000);
    expect((await jwks()).map((k) => k.kid)).toEqual([next.kid, before[0]!.kid]);
    await c.client.callTool({ name: 'echo', arguments: { message: 'before activation' } });
    expect(kidOfLastCall()).toBe(before[0]!.kid);
    // Once active, the new key signs and the upstream (which cached the JWKS above) verifies it.
    expect(gw.gw.credentials.keys.signing(next.activeFrom).kid).toBe(next.kid);
    const now = await gw.gw.credentials.keys.rotate(Date.now(), 0);
    await c.client.callTool({ name: 'echo', arguments: { message: 'after rotation' } });
    expect(kidOfLastCall()).toBe(now.kid);
    await c.close();
    // Retired keys leave the JWKS once every token they signed has expired.
    expect(gw.gw.credentials.keys.jwks(Date.now() + 10 * 60_000).keys.map((k) => k.kid)).toEqual([now.kid]);
  });

  it('enforces the decision rate per caller and tool with HTTP 429 and Retry-After', async () => {
    const c = await connectClient(`${gw.url}/mcp/limited`, await gw.token('carol'));
    for (let i = 0; i < 3; i++) await c.client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
    const sid = c.transport.sessionId!;
    const res = await fetch(`${gw.url}/mcp/limited`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await gw.token('carol')}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sid,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 99,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: 'one too many' } },
      }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({
      id: 99,
      error: { code: -32017, data: { limit: 3, window_seconds: 3600 } },
    });
    // another caller has a bucket of its own
    const d = await connectClient(`${gw.url}/mcp/limited`, await gw.token('dave'));
    await d.client.callTool({ name: 'echo', arguments: { message: 'fine' } });
    await c.close();
    await d.close();
  });

  it('a tool that changes under a session (rug pull) is hidden and refused; list_changed still arrives', async () => {
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    let listChanged = 0;
    c.client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      listChanged++;
    });
    expect((await c.client.listTools()).tools.map((t) => t.name)).toContain('mutable');
    expect((await c.client.callTool({ name: 'mutable', arguments: {} })).content).toEqual([
      { type: 'text', text: 'innocent' },
    ]);
    await c.client.callTool({ name: 'mutate', arguments: {} });
    const relisted = (await c.client.listTools()).tools.map((t) => t.name);
    expect(relisted).not.toContain('mutable');
    const err = (await c.client.callTool({ name: 'mutable', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(err.message).toContain('tools/call of mutable denied: the tool changed since this session first listed it');
    await expect.poll(() => listChanged, { timeout: 3000 }).toBeGreaterThan(0);
    await c.close();
  });
});

describe('decisions the gateway cannot honour', () => {
  it('an unknown detector denies, and is counted', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: { badmask: upstreamData({ mask: [{ path: '$.result', detectors: ['no-such-detector'] }] }) },
    });
    const gw = await startGateway({ policyDir, upstreams: { badmask: { url: upstream.url } } });
    try {
      const res = await fetch(`${gw.url}/mcp/badmask`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await gw.token('bob')}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
        }),
      });
      const body = (await res.json()) as { error: { code: number; message: string } };
      expect(body.error.code).toBe(-32013);
      expect(body.error.message).toMatch(/unknown detector\(s\) no-such-detector/);
      // The start-up upstream check's own initialize aside, nothing reached the upstream.
      expect(upstream.received.filter((r) => (r.message as { id?: unknown }).id !== 'gitgate-upstream-check')).toEqual(
        [],
      );
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      expect(metrics).toMatch(/gitgate_decisions_invalid_total 1/);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('a credential TTL over credentials.maxTtlSeconds is capped to it: calls succeed, counted, logged once naming the limit', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: { longttl: upstreamData({ credential_ttl_seconds: 600 }) },
    });
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write: (c: Buffer, _e, done) => {
          for (const l of c.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
    const gw = await startGateway({
      policyDir,
      upstreams: { longttl: { url: upstream.url } },
      credentials: { maxTtlSeconds: 120 },
      options: { logger },
    });
    try {
      const c = await connectClient(`${gw.url}/mcp/longttl`, await gw.token('bob', ['eng']));
      expect((await c.client.callTool({ name: 'echo', arguments: { message: 'hi' } })).isError).toBeFalsy();
      await c.close();
      const sent = upstream.received.filter((r) => (r.message as { method?: string }).method === 'tools/call');
      expect(sent).toHaveLength(1);
      const cred = JSON.parse(
        Buffer.from(
          String(sent[0]!.headers.authorization)
            .replace(/^Bearer /, '')
            .split('.')[1]!,
          'base64url',
        ).toString(),
      ) as { iat: number; exp: number };
      expect(cred.exp - cred.iat).toBe(120);
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      expect(metrics).toMatch(/gitgate_credential_ttl_capped_total [2-9]/);
      expect(metrics).toMatch(/gitgate_decisions_invalid_total 0/);
      const capped = lines.filter((l) => String(l.msg).includes('credentials.maxTtlSeconds'));
      expect(capped.map((l) => l.msg)).toEqual([
        'policy asks for credential.ttl_seconds 600, above credentials.maxTtlSeconds 120: its credentials are capped to 120 s',
      ]);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
