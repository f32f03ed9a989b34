import path from 'node:path';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

interface Upstream {
  url: string;
  received: { message: { method?: string; params?: { name?: string } }; headers: Record<string, string> }[];
  calls: { tool: string }[];
  close(): Promise<void>;
}

const fixture = path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs');

describe.each(['http', 'stdio'] as const)('MCP SDK client → gitgate → SDK server over %s', (kind) => {
  let upstream: Upstream | undefined;
  let gw: TestGateway;
  let url: string;

  beforeAll(async () => {
    if (kind === 'http') upstream = (await startHttpServer()) as Upstream;
    gw = await startGateway({
      upstreams:
        kind === 'http'
          ? { http: { url: upstream!.url } }
          : { stdio: { stdio: { command: process.execPath, args: [fixture, 'stdio'] } } },
    });
    url = `${gw.url}/mcp/${kind}`;
  });
  afterAll(async () => {
    await gw.close();
    await upstream?.close();
  });

  it('lists and calls tools', async () => {
    const c = await connectClient(url, await gw.token('alice', ['eng']));
    const { tools } = await c.client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'add', 'secret', 'slow']));
    const res = await c.client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
    expect(res.content).toEqual([{ type: 'text', text: '42' }]);
    await c.close();
  });

  it('reads resources and gets prompts', async () => {
    const c = await connectClient(url, await gw.token('alice', ['eng']));
    const { resources } = await c.client.listResources();
    expect(resources.map((r) => r.uri)).toContain('test://readme');
    const { resourceTemplates } = await c.client.listResourceTemplates();
    expect(resourceTemplates.map((r) => r.uriTemplate)).toContain('test://items/{id}');
    const read = await c.client.readResource({ uri: 'test://items/7' });
    expect(read.contents[0]).toMatchObject({ uri: 'test://items/7', text: 'item 7' });
    const prompt = await c.client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
    expect(prompt.messages[0]?.content).toEqual({ type: 'text', text: 'Hello, Ada' });
    await c.close();
  });

  it('relays progress notifications for the request that asked for them', async () => {
    const c = await connectClient(url, await gw.token('bob'));
    const seen: { progress: number; message?: string | undefined }[] = [];
    const res = await c.client.callTool({ name: 'slow', arguments: { steps: 3 } }, undefined, {
      onprogress: (p) => seen.push(p),
    });
    expect(res.content).toEqual([{ type: 'text', text: 'done after 3 steps' }]);
    expect(seen.map((p) => p.progress)).toEqual([1, 2, 3]);
    expect(seen[2]?.message).toBe('step 3');
    await c.close();
  });

  it('round-trips sampling and elicitation requests from the server to the client', async () => {
    const c = await connectClient(url, await gw.token('bob'), { sampling: true, elicitation: true });
    const sampled = await c.client.callTool({ name: 'ask-llm', arguments: { prompt: 'hello' } });
    expect(sampled.content).toEqual([{ type: 'text', text: 'model said: sampled(hello)' }]);
    const elicited = await c.client.callTool({ name: 'ask-user', arguments: {} });
    expect(elicited.content).toEqual([{ type: 'text', text: 'user accept: Ada' }]);
    await c.close();
  });

  it('denies what the policy denies, with its reason, and the upstream never sees the call', async () => {
    const c = await connectClient(url, await gw.token('bob', ['sales']));
    const before = upstream?.received.filter((r) => r.message.params?.name === 'secret').length ?? 0;
    const err = await c.client.callTool({ name: 'secret', arguments: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toContain('tools/call of secret denied: bob (groups: [sales]) may only call');
    expect((err as McpError).data).toMatchObject({
      gitgate: 'POLICY_DENIED',
      reasons: [expect.stringContaining('denied')],
    });
    if (upstream) expect(upstream.received.filter((r) => r.message.params?.name === 'secret').length).toBe(before);
    // the session keeps working after a deny
    expect((await c.client.callTool({ name: 'echo', arguments: { message: 'still here' } })).content).toEqual([
      { type: 'text', text: 'echo: still here' },
    ]);
    await c.close();
  });

  it('answers a required approval as a deny that says so', async () => {
    const c = await connectClient(url, await gw.token('alice', ['eng']));
    const err = (await c.client.callTool({ name: 'get-env', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-32011);
    expect(err.message).toContain('Approval required');
    expect(err.data).toMatchObject({ approvers: ['eng'], min_approvals: 1 });
    await c.close();
  });

  it('keeps sessions apart: another caller cannot use my session id', async () => {
    const mine = await connectClient(url, await gw.token('alice', ['eng']));
    const sid = mine.transport.sessionId!;
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await gw.token('mallory', ['eng'])}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sid,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32005);
    await mine.close();
  });

  it('ends the session on DELETE', async () => {
    const c = await connectClient(url, await gw.token('alice', ['eng']));
    const sid = c.transport.sessionId!;
    await c.close();
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await gw.token('alice', ['eng'])}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sid,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).toBe(404);
  });
});

describe('the client token stays at the gateway', () => {
  it('never reaches the upstream, in headers or body', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    try {
      const token = await gw.token('alice', ['eng']);
      const c = await connectClient(`${gw.url}/mcp/http`, token);
      await c.client.callTool({ name: 'echo', arguments: { message: 'x' } });
      await c.close();
      expect(upstream.received.length).toBeGreaterThan(0);
      for (const r of upstream.received) {
        expect(JSON.stringify(r)).not.toContain(token);
        // What it gets instead is gitgate's own short-lived credential.
        const jit = /^Bearer (.+)$/.exec(r.headers.authorization ?? '')![1]!;
        expect(JSON.parse(Buffer.from(jit.split('.')[0]!, 'base64url').toString())).toMatchObject({
          alg: 'ES256',
          typ: 'JWT',
        });
        expect(JSON.parse(Buffer.from(jit.split('.')[1]!, 'base64url').toString())).toMatchObject({
          sub: 'alice',
          act: { sub: 'gitgate' },
        });
      }
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
