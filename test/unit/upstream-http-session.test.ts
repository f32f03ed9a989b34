import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.js';
import { httpConnector } from '../../src/mcp/upstream/http.js';
import { ManualClock } from '../helpers/clock.js';
import { httpUpstreamConfig } from '../helpers/upstream-config.js';

interface Seen {
  method: string;
  headers: http.IncomingHttpHeaders;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

/** A loopback upstream whose answers each test sets; it records every request's method and headers. */
describe('an HTTP upstream session', () => {
  let server: http.Server;
  let url: string;
  let handle: Handler;
  const seen: Seen[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method ?? '', headers: req.headers });
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => handle(req, res, body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    seen.length = 0;
  });

  // On a clock no test moves, no deadline fires: each outcome is the upstream's doing.
  const connector = () => httpConnector(httpUpstreamConfig('u', url), new ManualClock());

  const json = (res: http.ServerResponse, value: unknown, headers: http.OutgoingHttpHeaders = {}) => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(value));
  };
  const initialize = { jsonrpc: '2.0' as const, id: 1, method: 'initialize', params: {} };
  const call = { jsonrpc: '2.0' as const, id: 2, method: 'tools/call', params: { name: 'x' } };

  async function drain(it: AsyncIterable<unknown>): Promise<unknown[]> {
    const out: unknown[] = [];
    for await (const m of it) out.push(m);
    return out;
  }

  it('keeps the id and version initialize gave, sends them on, and ends upstream with one DELETE when closed', async () => {
    handle = (req, res, body) => {
      if (req.method === 'DELETE') {
        res.writeHead(204).end();
        return;
      }
      const { id } = JSON.parse(body) as { id: number };
      json(res, { jsonrpc: '2.0', id, result: { protocolVersion: '2025-11-25' } }, { 'mcp-session-id': 'sid-7' });
    };
    const c = connector();
    try {
      const session = await c.open();
      expect(session.upstreamId).toBeUndefined();
      await drain(session.request(initialize));
      expect(session.upstreamId).toBe('sid-7');
      await drain(session.request(call));
      expect(seen[1]!.headers).toMatchObject({ 'mcp-session-id': 'sid-7', 'mcp-protocol-version': '2025-11-25' });
      expect(session.closed).toBe(false);
      await session.close();
      await session.close();
      expect(session.closed).toBe(true);
      expect(seen.map((s) => s.method)).toEqual(['POST', 'POST', 'DELETE']);
      expect(seen[2]!.headers).toMatchObject({ 'mcp-session-id': 'sid-7', 'mcp-protocol-version': '2025-11-25' });
    } finally {
      await c.shutdown();
    }
  });

  it('a closed session sends nothing more upstream: requests, notifications and listens are refused', async () => {
    handle = (req, res, body) => {
      if (req.method === 'DELETE') {
        res.writeHead(204).end();
        return;
      }
      json(res, { jsonrpc: '2.0', id: (JSON.parse(body) as { id: number }).id, result: {} }, { 'mcp-session-id': 's' });
    };
    const c = connector();
    try {
      const session = await c.open();
      await drain(session.request(initialize));
      await session.close();
      const before = seen.length;
      await expect(drain(session.request(call))).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
      await expect(session.send({ jsonrpc: '2.0', method: 'notifications/initialized' })).rejects.toMatchObject({
        code: 'UPSTREAM_UNAVAILABLE',
      });
      await expect(session.listen(new AbortController().signal)).rejects.toMatchObject({
        code: 'UPSTREAM_UNAVAILABLE',
      });
      expect(seen.length).toBe(before);
    } finally {
      await c.shutdown();
    }
  });

  it('a session initialize gave no id is closed without a DELETE', async () => {
    handle = (_req, res) => json(res, { jsonrpc: '2.0', id: 1, result: {} });
    const c = connector();
    try {
      const session = await c.open();
      await drain(session.request(initialize));
      await session.close();
      expect(session.closed).toBe(true);
      expect(seen.map((s) => s.method)).toEqual(['POST']);
    } finally {
      await c.shutdown();
    }
  });

  it('a resumed session carries the id and version it was resumed with, without initialize', async () => {
    handle = (_req, res, body) =>
      json(res, { jsonrpc: '2.0', id: (JSON.parse(body) as { id: number }).id, result: {} });
    const c = connector();
    try {
      const session = c.resume!('sid-r', '2025-06-18');
      expect(session.upstreamId).toBe('sid-r');
      await drain(session.request(call));
      expect(seen[0]!.headers).toMatchObject({ 'mcp-session-id': 'sid-r', 'mcp-protocol-version': '2025-06-18' });
    } finally {
      await c.shutdown();
    }
  });

  it('a 404 for a session the upstream had given an id closes it (SESSION_UNKNOWN); closing it then sends nothing', async () => {
    handle = (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{}');
    };
    const c = connector();
    try {
      const session = c.resume!('sid-gone', '2025-11-25');
      await expect(drain(session.request(call))).rejects.toMatchObject({ code: 'SESSION_UNKNOWN' });
      expect(session.closed).toBe(true);
      await session.close();
      expect(seen.map((s) => s.method)).toEqual(['POST']);
    } finally {
      await c.shutdown();
    }
  });

  it('an SSE answer the upstream keeps closing with new event ids is resumed 16 times, then fails', async () => {
    let n = 0;
    handle = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`id: e-${n++}\ndata: \n\n`);
    };
    const c = connector();
    try {
      const session = await c.open();
      await expect(drain(session.request(call))).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
      expect(seen.map((s) => s.method)).toEqual(['POST', ...Array<string>(16).fill('GET')]);
      // Each resume asks for what followed the id the previous connection last sent.
      expect(seen.slice(1).map((s) => s.headers['last-event-id'])).toEqual(
        Array.from({ length: 16 }, (_, i) => `e-${i}`),
      );
    } finally {
      await c.shutdown();
    }
  });

  it('an SSE answer whose resume the upstream refuses fails after that one GET', async () => {
    handle = (req, res) => {
      if (req.method === 'GET') {
        res.writeHead(405).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('id: only\ndata: \n\n');
    };
    const c = connector();
    try {
      const session = await c.open();
      await expect(drain(session.request(call))).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
      expect(seen.map((s) => [s.method, s.headers['last-event-id']])).toEqual([
        ['POST', undefined],
        ['GET', 'only'],
      ]);
    } finally {
      await c.shutdown();
    }
  });

  it('a listening request ends with its stream, without a response and without a resume', async () => {
    const note = { jsonrpc: '2.0', method: 'notifications/tools/list_changed' };
    handle = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`id: l-1\nevent: message\ndata: ${JSON.stringify(note)}\n\n`);
    };
    const c = connector();
    try {
      const session = await c.open();
      const out = await drain(
        session.request({ jsonrpc: '2.0', id: 3, method: 'subscriptions/listen', params: {} }, { listen: true }),
      );
      expect(out).toEqual([note]);
      expect(seen.map((s) => s.method)).toEqual(['POST']);
    } finally {
      await c.shutdown();
    }
  });

  it('a connector or session logged or serialized shows no static secret (its state is in private fields)', async () => {
    handle = (_req, res) => json(res, { jsonrpc: '2.0', id: 1, result: {} }, { 'mcp-session-id': 'sid-s' });
    const c = httpConnector({
      ...httpUpstreamConfig('keyed', url),
      secret: { header: 'x-api-key', value: new Secret('k3y-v4lue') },
    });
    try {
      const session = await c.open();
      await drain(session.request(initialize));
      expect(seen[0]!.headers['x-api-key']).toBe('k3y-v4lue');
      expect(JSON.stringify(c)).toBe('{"name":"keyed","transport":"http"}');
      for (const shown of [JSON.stringify(c), inspect(c, { depth: 5 }), JSON.stringify(session), inspect(session)])
        expect(shown).not.toContain('k3y-v4lue');
    } finally {
      await c.shutdown();
    }
  });
});
