import path from 'node:path';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const fixture = path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs');

async function modernClient(url: string, token: string, mode: 'auto' | { pin: string } = { pin: '2026-07-28' }) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'modern-test', version: '1.0.0' }, { versionNegotiation: { mode } });
  await client.connect(transport);
  return { client, close: () => client.close() };
}

describe('2026-07-28 (stateless) clients through gitgate', () => {
  let gw: TestGateway;
  let upstream: {
    url: string;
    received: { message: { method?: string; params?: Record<string, unknown> } }[];
    close(): Promise<void>;
  };

  beforeAll(async () => {
    upstream = await startHttpServer();
    gw = await startGateway({
      upstreams: {
        http: { url: upstream.url },
        stdio: { stdio: { command: process.execPath, args: [fixture, 'stdio'] } },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it.each(['http', 'stdio'])('a pinned 2026-07-28 client lists and calls tools on the %s upstream', async (name) => {
    const c = await modernClient(`${gw.url}/mcp/${name}`, await gw.token('alice', ['eng']));
    expect(c.client.getNegotiatedProtocolVersion?.() ?? '2026-07-28').toBe('2026-07-28');
    const { tools } = await c.client.listTools();
    expect(tools.map((t) => t.name)).toContain('echo');
    const res = await c.client.callTool({ name: 'echo', arguments: { message: 'modern' } });
    expect(res.content).toEqual([{ type: 'text', text: 'echo: modern' }]);
    await c.close();
  });

  it('an auto-negotiating client discovers the modern revision', async () => {
    const c = await modernClient(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']), 'auto');
    const res = await c.client.callTool({ name: 'add', arguments: { a: 1, b: 2 } });
    expect(res.content).toEqual([{ type: 'text', text: '3' }]);
    await c.close();
  });

  it('strips the 2026 envelope before the session-based upstream sees the request, and callers cannot collide on ids', async () => {
    const [a, b] = await Promise.all([
      modernClient(`${gw.url}/mcp/http`, await gw.token('alice', ['eng'])),
      modernClient(`${gw.url}/mcp/http`, await gw.token('bob', ['eng'])),
    ]);
    const results = await Promise.all([
      a.client.callTool({ name: 'echo', arguments: { message: 'from-a' } }),
      b.client.callTool({ name: 'echo', arguments: { message: 'from-b' } }),
    ]);
    expect(results.map((r) => r.content)).toEqual([
      [{ type: 'text', text: 'echo: from-a' }],
      [{ type: 'text', text: 'echo: from-b' }],
    ]);
    const forwarded = upstream.received.filter((r) => r.message.method === 'tools/call');
    expect(forwarded.length).toBeGreaterThanOrEqual(2);
    for (const r of forwarded)
      expect(JSON.stringify(r.message.params?._meta ?? {})).not.toContain('io.modelcontextprotocol/');
    await a.close();
    await b.close();
  });

  it('denies by policy for modern clients too', async () => {
    const c = await modernClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    await expect(c.client.callTool({ name: 'secret', arguments: {} })).rejects.toThrow(/tools\/call of secret denied/);
    await c.close();
  });

  describe('headers must match the body (HTTP 400, JSON-RPC -32020)', () => {
    const envelope = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    };
    const post = async (headers: Record<string, string>, body: unknown) => {
      const res = await fetch(`${gw.url}/mcp/http`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await gw.token('alice', ['eng'])}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...headers,
        },
        body: JSON.stringify(body),
      });
      return {
        status: res.status,
        body: (await res.json()) as { id: unknown; error?: { code: number; message: string }; result?: unknown },
      };
    };
    const call = (name: string) => ({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name, arguments: { message: 'm' }, _meta: envelope },
    });
    const good = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' };

    it('accepts matching headers', async () => {
      const r = await post(good, call('echo'));
      expect(r.status).toBe(200);
      expect(r.body.result).toMatchObject({ content: [{ type: 'text', text: 'echo: m' }] });
    });

    it.each([
      [
        'Mcp-Name names another tool',
        { ...good, 'mcp-name': 'add' },
        /Mcp-Name header "add" does not match params.name "echo"/,
      ],
      ['Mcp-Method names another method', { ...good, 'mcp-method': 'tools/list' }, /Mcp-Method header/],
      [
        'Mcp-Method is missing',
        { 'mcp-protocol-version': '2026-07-28', 'mcp-name': 'echo' },
        /Mcp-Method header is required/,
      ],
      [
        'Mcp-Name is missing',
        { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call' },
        /Mcp-Name header is required/,
      ],
      ['protocol header disagrees with _meta', { ...good, 'mcp-protocol-version': '2025-11-25' }, /disagrees/],
    ])('refuses when %s', async (_why, headers, message) => {
      const before = upstream.received.length;
      const r = await post(headers, call('echo'));
      expect(r.status).toBe(400);
      expect(r.body.error?.code).toBe(-32020);
      expect(r.body.error?.message).toMatch(message);
      expect(r.body.id).toBe(9);
      expect(upstream.received.length).toBe(before);
    });

    it('decodes base64-sentinel header values', async () => {
      const r = await post(
        { ...good, 'mcp-name': `=?base64?${Buffer.from('echo').toString('base64')}?=` },
        call('echo'),
      );
      expect(r.status).toBe(200);
    });

    it('answers the GET stream with 405 for modern clients', async () => {
      const res = await fetch(`${gw.url}/mcp/http`, {
        headers: {
          authorization: `Bearer ${await gw.token('alice')}`,
          accept: 'text/event-stream',
          'mcp-protocol-version': '2026-07-28',
        },
      });
      expect(res.status).toBe(405);
    });
  });
});
