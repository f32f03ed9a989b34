import { getEventListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpConnector } from '../../src/mcp/upstream/http.js';
import { httpUpstreamConfig } from '../helpers/upstream-config.js';

/**
 * An upstream that answers the first request on each connection and then,
 * like a server closing an idle keep-alive connection just as it is reused,
 * drops the connection when the next request arrives on it.
 */
describe('Streamable HTTP upstream over kept-alive connections', () => {
  let server: http.Server;
  let url: string;
  const served: string[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const socket = req.socket as typeof req.socket & { used?: boolean };
      if (socket.used) {
        socket.destroy();
        return;
      }
      socket.used = true;
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const msg = JSON.parse(body) as { id: number };
        served.push(String(msg.id));
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { ok: msg.id } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a call that meets a connection closed as it was reused fails, and is never sent twice: the upstream may have run it', async () => {
    const connector = httpConnector(httpUpstreamConfig('flaky', url));
    const session = await connector.open();
    const answers: unknown[] = [];
    const errors: string[] = [];
    for (let id = 1; id <= 3; id++)
      try {
        for await (const m of session.request({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo' } }))
          answers.push(m);
      } catch (err) {
        errors.push(`${id}: ${(err as { code?: string }).code}`);
      }
    // 1 opened the connection; 2 met it closed (this upstream drops a reused connection unread, but a reset
    // after running the call looks the same); 3 went on a fresh one.
    expect(answers).toEqual([1, 3].map((id) => ({ jsonrpc: '2.0', id, result: { ok: id } })));
    expect(errors).toEqual(['2: UPSTREAM_UNAVAILABLE']);
    expect(served).toEqual(['1', '3']);
    await connector.shutdown();
  });
});

describe('the headers of an upstream request', () => {
  it('carry Host (the URL’s, unless the static secret is sent as Host), the credential, the session and the body length', async () => {
    const seen: string[][] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.rawHeaders);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's9' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-11-25' } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
    const base = httpUpstreamConfig('h', url);
    const { Secret } = await import('../../src/config/secret.js');
    const msg = { jsonrpc: '2.0' as const, id: 1, method: 'initialize', params: {} };
    try {
      for (const cfg of [base, { ...base, secret: { header: 'Host', value: new Secret('virtual.example') } }]) {
        const connector = httpConnector(cfg);
        const session = await connector.open();
        for await (const _ of session.request(msg, { auth: { headers: { authorization: 'Bearer t0k' } } })) break;
        for await (const _ of session.request({ ...msg, id: 2, method: 'ping' })) break;
        await connector.shutdown();
      }
      const pairs = (raw: string[]) =>
        Object.fromEntries(raw.flatMap((v, i) => (i % 2 === 0 ? [[v.toLowerCase(), raw[i + 1]!]] : [])));
      const hostCount = (raw: string[]) => raw.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'host').length;
      expect(seen.map(hostCount)).toEqual([1, 1, 1, 1]);
      const [first, second, third] = seen.map(pairs);
      expect(first).toMatchObject({
        host: new URL(url).host,
        authorization: 'Bearer t0k',
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(JSON.stringify(msg))),
      });
      expect(second).toMatchObject({ 'mcp-session-id': 's9', 'mcp-protocol-version': '2025-11-25' });
      expect(third).toMatchObject({ host: 'virtual.example' });
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('a request whose caller went away', () => {
  it('is destroyed when its signal aborts (the upstream sees the connection close), and leaves no listener behind', async () => {
    let closed!: () => void;
    let arrived!: () => void;
    const upstreamSawClose = new Promise<void>((r) => (closed = r));
    const held = new Promise<void>((r) => (arrived = r));
    const server = http.createServer((req, res) => {
      req.resume();
      if (req.headers['x-hold'] === '1') {
        // Never answers: only the caller's going away ends this request.
        res.on('close', () => closed());
        arrived();
        return;
      }
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const connector = httpConnector(
      httpUpstreamConfig('gone', `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`),
    );
    try {
      // Answered: its abort listener is removed once the request is done.
      const done = new AbortController();
      const res = await connector.send('POST', { 'content-length': '2' }, '{}', done.signal);
      await connector.readBody(res);
      await new Promise((r) => setImmediate(r));
      expect(getEventListeners(done.signal, 'abort')).toHaveLength(0);
      // Held: aborting destroys it with an AbortError, and the upstream sees the connection go.
      const ctl = new AbortController();
      const pending = connector.send('POST', { 'content-length': '2', 'x-hold': '1' }, '{}', ctl.signal);
      await held;
      ctl.abort();
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
      await upstreamSawClose;
      // Already aborted: nothing is sent.
      await expect(connector.send('POST', {}, undefined, ctl.signal)).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      await connector.shutdown();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
