import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const fixture = path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs');

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('bad input gets a clear answer and the gateway keeps serving', () => {
  let gw: TestGateway;
  let upstream: { url: string; received: unknown[]; close(): Promise<void> };
  let token: string;
  const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

  beforeAll(async () => {
    upstream = await startHttpServer();
    gw = await startGateway({
      server: { bodyLimitBytes: 4096 },
      upstreams: {
        http: { url: upstream.url },
        down: { url: `http://127.0.0.1:${await closedPort()}/mcp` },
        slow: { url: upstream.url, timeoutMs: 300 },
        stdio: { stdio: { command: process.execPath, args: [fixture, 'stdio'] }, timeoutMs: 300 },
      },
    });
    token = await gw.token('alice', ['eng']);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  async function post(name: string, body: string, headers: Record<string, string> = JSON_HEADERS) {
    const res = await fetch(`${gw.url}/mcp/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...headers },
      body,
    });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      json: JSON.parse(text) as { jsonrpc: string; id: unknown; error?: { code: number; message: string } },
    };
  }

  async function initialize(name: string): Promise<string> {
    const res = await fetch(`${gw.url}/mcp/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...JSON_HEADERS },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    });
    expect(res.status).toBe(200);
    await res.text();
    return res.headers.get('mcp-session-id')!;
  }

  it.each([
    ['malformed JSON', '{"jsonrpc": "2.0", "id": 1, "method":', 400, -32700, /Parse error/],
    ['an empty body', '', 400, -32700, /Parse error/],
    ['JSON that is not JSON-RPC', '{"hello": "world"}', 400, -32600, /jsonrpc must be "2.0"/],
    ['a batch', '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600, /batches are not supported/],
    [
      'params that are not an object',
      '{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}',
      400,
      -32600,
      /params must be an object/,
    ],
    [
      'a null id on a request',
      '{"jsonrpc":"2.0","id":null,"method":"ping"}',
      400,
      -32600,
      /id must be a string or an integer/,
    ],
  ])('%s → HTTP %i, JSON-RPC %i', async (_name, body, status, code, message) => {
    const r = await post('http', body);
    expect(r.status).toBe(status);
    expect(r.json.jsonrpc).toBe('2.0');
    expect(r.json.error?.code).toBe(code);
    expect(r.json.error?.message).toMatch(message);
  });

  it('unknown upstream → 404', async () => {
    const r = await post('nope', '{"jsonrpc":"2.0","id":1,"method":"ping"}');
    expect(r.status).toBe(404);
    expect(r.json.error?.message).toMatch(/Unknown upstream "nope"/);
  });

  it('body over the configured limit → 413', async () => {
    const r = await post(
      'http',
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(10_000) } }),
    );
    expect(r.status).toBe(413);
    expect(r.json.error?.message).toMatch(/Payload Too Large/);
  });

  it('wrong content type → 415', async () => {
    const r = await post('http', '{"jsonrpc":"2.0","id":1,"method":"ping"}', {
      'content-type': 'text/plain',
      accept: 'application/json, text/event-stream',
    });
    expect(r.status).toBe(415);
    expect(r.json.error?.message).toMatch(/Content-Type must be application\/json, got text\/plain/);
  });

  it('missing Accept → 406', async () => {
    // fetch() always adds Accept: */*, so send a request without one by hand.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(`${gw.url}/mcp/http`);
      const req = http.request(
        u,
        { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
        (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: b }));
        },
      );
      req.on('error', reject);
      req.end('{"jsonrpc":"2.0","id":1,"method":"ping"}');
    });
    expect(status).toBe(406);
    expect(JSON.parse(body).error.message).toMatch(/Accept header must list application\/json and text\/event-stream/);
  });

  it('missing session → 400, unknown session → 404', async () => {
    expect((await post('http', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')).status).toBe(400);
    const r = await post('http', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {
      ...JSON_HEADERS,
      'mcp-session-id': 'not-a-session',
    });
    expect(r.status).toBe(404);
    expect(r.json.error?.message).toMatch(/Unknown session not-a-session/);
  });

  it('unsupported protocol version → 400', async () => {
    const sid = await initialize('http');
    const r = await post('http', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {
      ...JSON_HEADERS,
      'mcp-session-id': sid,
      'mcp-protocol-version': '1999-01-01',
    });
    expect(r.status).toBe(400);
    expect(r.json.error?.message).toMatch(/Unsupported protocol version 1999-01-01 in MCP-Protocol-Version/);
    expect(r.json.error).toMatchObject({ code: -32022, data: { requested: '1999-01-01', id: 1 } });
  });

  it('upstream down → 502 naming the upstream', async () => {
    const r = await post(
      'down',
      JSON.stringify({
        jsonrpc: '2.0',
        id: 5,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    );
    expect(r.status).toBe(502);
    expect(r.json.id).toBe(5);
    expect(r.json.error?.message).toMatch(/upstream down is unreachable/);
  });

  it.each(['slow', 'stdio'])('upstream %s timing out → a JSON-RPC error naming the upstream', async (name) => {
    const sid = await initialize(name);
    const res = await fetch(`${gw.url}/mcp/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'hang', arguments: {} } }),
    });
    const text = await res.text();
    // Before anything was relayed it is HTTP 504; once an SSE stream is open the error is its last event.
    const payload = res.headers.get('content-type')?.includes('text/event-stream')
      ? JSON.parse(text.split('data: ').at(-1)!)
      : JSON.parse(text);
    if (!res.headers.get('content-type')?.includes('text/event-stream')) expect(res.status).toBe(504);
    expect(payload).toMatchObject({ id: 7, error: { code: -32015 } });
    expect(payload.error.message).toMatch(new RegExp(`upstream ${name} did not answer within 300 ms`));
  });

  it('no token → 401 with the RFC 9728 challenge; the metadata is served', async () => {
    const res = await fetch(`${gw.url}/mcp/http`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate')!;
    expect(challenge).toBe(`Bearer resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp/http"`);
    const meta = (await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp/http`)).json()) as {
      resource: string;
    };
    expect(meta.resource).toBe(`${gw.url}/mcp/http`);
    expect((await fetch(`${gw.url}/.well-known/oauth-protected-resource`)).status).toBe(200);
  });

  it('a garbage token → 401 invalid_token', async () => {
    const res = await fetch(`${gw.url}/mcp/http`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, authorization: 'Bearer abc.def.ghi' },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  });

  it('a foreign browser origin → 403; loopback origins pass', async () => {
    const bad = await post('http', '{"jsonrpc":"2.0","id":1,"method":"ping"}', {
      ...JSON_HEADERS,
      origin: 'https://evil.example',
    });
    expect(bad.status).toBe(403);
    const ok = await post(
      'http',
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
      {
        ...JSON_HEADERS,
        origin: 'http://localhost:3000',
      },
    );
    expect(ok.status).toBe(200);
  });

  it('still serves after all of the above', async () => {
    const sid = await initialize('http');
    const r = await post(
      'http',
      JSON.stringify({
        jsonrpc: '2.0',
        id: 11,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: 'alive' } },
      }),
      { ...JSON_HEADERS, 'mcp-session-id': sid },
    );
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: 11, result: { content: [{ type: 'text', text: 'echo: alive' }] } });
    const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { ready: boolean };
    expect(ready.ready).toBe(true);
  });
});
