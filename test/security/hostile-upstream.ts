import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';

/** A request the hostile upstream received, with the headers gitgate sent. */
export interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly msg: JsonRpcRequest;
}

export interface Hostile {
  readonly url: string;
  readonly received: Received[];
  close(): Promise<void>;
}

/**
 * A real Streamable HTTP upstream on loopback that answers initialize and lists
 * like a server, and hands every tools/call to `onCall` to answer as an attacker.
 */
export async function startHostile(
  onCall: (call: Received, res: http.ServerResponse, req: http.IncomingMessage) => void | Promise<void>,
  opts: { protocolVersion?: (call: Received) => string; tools?: () => unknown[] } = {},
): Promise<Hostile> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const msg = JSON.parse(body) as JsonRpcRequest;
      const call = { headers: req.headers, msg };
      received.push(call);
      if (!('id' in msg) || msg.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      const json = (m: JsonRpcMessage, headers: Record<string, string> = {}) => {
        res.writeHead(200, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(m));
      };
      if (msg.method === 'initialize')
        json(
          {
            jsonrpc: '2.0',
            id: msg.id,
            result: {
              protocolVersion: opts.protocolVersion?.(call) ?? '2025-11-25',
              capabilities: { tools: {} },
              serverInfo: { name: 'hostile', version: '1' },
            },
          },
          { 'mcp-session-id': 'h1' },
        );
      else if (msg.method === 'tools/list')
        json({
          jsonrpc: '2.0',
          id: msg.id,
          result: { tools: opts.tools?.() ?? [{ name: 'echo', inputSchema: { type: 'object' } }] },
        });
      else void onCall(call, res, req);
    });
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    received,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * Write `unit` again and again (minding back-pressure) until the peer goes away or
 * `limit` bytes are out. Resolves with the bytes written and whether the peer closed first.
 */
export function writeForever(
  res: http.ServerResponse,
  unit: Buffer | string,
  limit: number,
): Promise<{ sent: number; peerClosed: boolean }> {
  const chunk = typeof unit === 'string' ? Buffer.from(unit) : unit;
  return new Promise((resolve) => {
    let sent = 0;
    let done = false;
    const finish = (peerClosed: boolean) => {
      if (done) return;
      done = true;
      resolve({ sent, peerClosed });
    };
    res.on('close', () => finish(!res.writableFinished));
    const pump = () => {
      while (!done && !res.destroyed && sent < limit) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (sent >= limit && !done) {
        res.end();
        finish(false);
      }
    };
    pump();
  });
}

/** What the gateway answered one POST: every JSON-RPC message, the last one typed for assertions. */
export interface McpAnswer {
  readonly status: number;
  readonly headers: globalThis.Headers;
  readonly text: string;
  readonly messages: JsonRpcMessage[];
  readonly last:
    | (JsonRpcMessage & { error?: { message: string; data?: { gitgate?: string } }; result?: unknown })
    | undefined;
}

/** A 2025-protocol client of the gateway over plain fetch: initialize once, then calls. */
export async function mcpSession(
  gatewayUrl: string,
  upstream: string,
  token: string,
): Promise<{ call(name: string, args?: Record<string, unknown>): Promise<McpAnswer>; list(): Promise<McpAnswer> }> {
  const url = `${gatewayUrl}/mcp/${upstream}`;
  const base = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  const post = async (msg: unknown, extra: Record<string, string> = {}): Promise<McpAnswer> => {
    const res = await fetch(url, { method: 'POST', headers: { ...base, ...extra }, body: JSON.stringify(msg) });
    const text = await res.text();
    const messages: JsonRpcMessage[] = (res.headers.get('content-type') ?? '').includes('text/event-stream')
      ? text
          .split(/\n\n/)
          .map((ev) =>
            ev
              .split('\n')
              .filter((l) => l.startsWith('data: '))
              .map((l) => l.slice(6))
              .join('\n'),
          )
          .filter((d) => d !== '')
          .map((d) => JSON.parse(d) as JsonRpcMessage)
      : text === ''
        ? []
        : [JSON.parse(text) as JsonRpcMessage];
    return { status: res.status, headers: res.headers, text, messages, last: messages.at(-1) as McpAnswer['last'] };
  };
  const init = await post({
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'security-test', version: '1' } },
  });
  const sid = init.headers.get('mcp-session-id');
  if (sid === null) throw new Error(`initialize failed: ${init.status} ${init.text}`);
  const session = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session);
  let id = 1;
  return {
    call: (name: string, args: Record<string, unknown> = {}) =>
      post({ jsonrpc: '2.0', id: id++, method: 'tools/call', params: { name, arguments: args } }, session),
    list: () => post({ jsonrpc: '2.0', id: id++, method: 'tools/list', params: {} }, session),
  };
}
