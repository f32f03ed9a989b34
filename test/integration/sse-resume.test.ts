import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpConnector } from '../../src/mcp/upstream/http.js';
import { httpUpstreamConfig } from '../helpers/upstream-config.js';

type Mode = 'polling' | 'no-ids' | 'same-id';

/**
 * A session-era upstream (real HTTP on loopback) that answers a POST with an SSE stream and closes it
 * before the answer, the way a 2025-11-25 server polls: a priming event with an id, progress, then the
 * connection ends; GET + Last-Event-ID gets the rest.
 */
describe('an upstream SSE response closed before its answer', () => {
  let server: http.Server;
  let url: string;
  let mode: Mode = 'polling';
  const gets: (string | undefined)[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.method === 'GET') {
        const last = req.headers['last-event-id'];
        gets.push(typeof last === 'string' ? last : undefined);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        if (mode === 'same-id') {
          res.end('id: s-1\ndata: \n\n');
          return;
        }
        res.end(
          `id: s-3\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { done: true } })}\n\n`,
        );
        return;
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const progress = JSON.stringify({
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: 't', progress: 1 },
        });
        if (mode === 'no-ids') res.end(`event: message\ndata: ${progress}\n\n`);
        else res.end(`id: s-1\nretry: 10\ndata: \n\nid: s-2\nevent: message\ndata: ${progress}\n\n`);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const connector = () => httpConnector(httpUpstreamConfig('polling', url));

  async function call(): Promise<unknown[]> {
    const c = connector();
    const out: unknown[] = [];
    try {
      const session = await c.open();
      for await (const m of session.request({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x' } }))
        out.push(m);
      return out;
    } finally {
      await c.shutdown();
    }
  }

  it('is resumed with GET + Last-Event-ID, and the answer arrives (not a 502)', async () => {
    mode = 'polling';
    gets.length = 0;
    const out = await call();
    expect(out).toEqual([
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } },
      { jsonrpc: '2.0', id: 1, result: { done: true } },
    ]);
    expect(gets).toEqual(['s-2']);
  });

  it('without event ids there is nothing to resume: the request fails as an upstream protocol error', async () => {
    mode = 'no-ids';
    gets.length = 0;
    await expect(call()).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
    expect(gets).toEqual([]);
  });

  it('a resumed stream that ends with no new event id is not resumed again (bounded)', async () => {
    mode = 'same-id';
    gets.length = 0;
    await expect(call()).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
    // Resumed from s-2, then from s-1 (new to it); the stream after s-1 brought nothing new: no third try.
    expect(gets).toEqual(['s-2', 's-1']);
  });
});
