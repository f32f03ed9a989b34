/**
 * Unbounded work on untrusted client input, attacked: every test here is an
 * attack that worked against an earlier gitgate. Real gateways on loopback
 * (port 0), raw sockets where a client must misbehave. Timeouts are the test's
 * own small ones; every wait is a bounded loop.
 */
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import type { GatewayError } from '../../src/errors.js';
import { Channel } from '../../src/mcp/channel.js';
import { checkJsonText, MAX_JSON_DEPTH, MAX_JSON_VALUES } from '../../src/mcp/json-limits.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { httpConnector } from '../../src/mcp/upstream/http.js';
import type { UpstreamConnector } from '../../src/mcp/upstream/types.js';
import { signBody } from '../../src/webhooks/verify-and-receive.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { fakeUpstream, scriptedUpstream } from '../helpers/fake-upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { testSeed } from '../helpers/soak.js';

const SEED = testSeed('resource-bounds');

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));
const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const init = (id: number | string = 0) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
  });
const call = (id: number, name: string, args: unknown, meta?: Record<string, unknown>) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) },
  });

interface Reply {
  status: number;
  headers: Headers;
  json: { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } };
}

async function post(
  url: string,
  token: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...JSON_HEADERS, authorization: `Bearer ${token}`, ...headers },
    body,
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Reply['json'] };
}

/** A raw connection: write what you like, read what comes back, know when it closes. */
async function rawSocket(url: string) {
  const u = new URL(url);
  const sock = net.connect(Number(u.port), u.hostname);
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  const state = { data: '', closed: false };
  sock.on('data', (d: Buffer) => (state.data += d.toString('latin1')));
  sock.on('close', () => (state.closed = true));
  return {
    sock,
    state,
    /** Bounded wait until `pred` holds (or the socket closes). */
    async until(pred: () => boolean, steps = 300): Promise<void> {
      for (let i = 0; i < steps && !pred(); i++) await tick();
    },
    status(): number | undefined {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(state.data);
      return m ? Number(m[1]) : undefined;
    },
    body(): Reply['json'] {
      return JSON.parse(state.data.slice(state.data.indexOf('\r\n\r\n') + 4)) as Reply['json'];
    },
  };
}

/** Send `head`, then one byte per tick until the server answers or closes (at most `steps` bytes). */
async function drip(url: string, head: string, byte: string, steps = 500) {
  const s = await rawSocket(url);
  s.sock.write(head);
  let sent = 0;
  while (sent < steps && s.state.data === '' && !s.state.closed) {
    await tick();
    if (!s.sock.writable) break;
    s.sock.write(byte);
    sent++;
  }
  await s.until(() => s.state.closed, 100);
  s.sock.destroy();
  return { status: s.status(), body: s.state.data === '' ? undefined : s.body(), closed: s.state.closed, sent };
}

/** An SSE response read incrementally. */
function openSse(url: string, method: 'GET' | 'POST', headers: Record<string, string>, body?: string) {
  const events: Record<string, unknown>[] = [];
  const state = { status: 0, ended: false, buf: '' };
  const u = new URL(url);
  const req = http.request(
    { host: u.hostname, port: u.port, path: u.pathname, method, headers, agent: false },
    (res) => {
      state.status = res.statusCode!;
      res.on('data', (c: Buffer) => {
        state.buf += c.toString();
        for (let i = state.buf.indexOf('\n\n'); i >= 0; i = state.buf.indexOf('\n\n')) {
          const block = state.buf.slice(0, i);
          state.buf = state.buf.slice(i + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (data !== '') events.push(JSON.parse(data) as Record<string, unknown>);
        }
      });
      res.on('end', () => (state.ended = true));
      res.on('close', () => (state.ended = true));
    },
  );
  req.on('error', () => (state.ended = true));
  req.end(body);
  return {
    events,
    state,
    async until(pred: () => boolean, steps = 500): Promise<void> {
      for (let i = 0; i < steps && !pred(); i++) await tick();
    },
    close: () => req.destroy(),
  };
}

/** An upstream whose `wait` tool and GET stream stay open until the test lets them go. */
function heldUpstream(
  cfg: UpstreamConfig,
  ctl: { release: Promise<void>; listeners: Channel<JsonRpcMessage>[] },
): UpstreamConnector {
  return scriptedUpstream(
    cfg.name,
    () => ({
      async *answer(msg) {
        const token = (msg.params?._meta as { progressToken?: string } | undefined)?.progressToken ?? 'p';
        yield { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1 } };
        await ctl.release;
        yield { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'released' }] } };
      },
      async listen(signal) {
        const ch = new Channel<JsonRpcMessage>();
        signal.addEventListener('abort', () => ch.close(), { once: true });
        ctl.listeners.push(ch);
        return ch;
      },
    }),
    { serverName: 'held' },
  );
}

describe('slow clients are timed out; open responses are not', () => {
  let gw: TestGateway;
  let token: string;
  let release!: () => void;
  const ctl = { release: new Promise<void>((r) => (release = r)), listeners: [] as Channel<JsonRpcMessage>[] };
  const mcp = () => `${gw.url}/mcp/http`;

  beforeAll(async () => {
    gw = await startGateway({
      server: { requestTimeoutMs: 300, headersTimeoutMs: 150, keepAliveTimeoutMs: 200 },
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' }, stdio: { url: 'http://127.0.0.1:9/unused' } },
      approvals: { holdSeconds: 1 },
      options: { connectUpstream: (cfg) => (cfg.name === 'http' ? heldUpstream(cfg, ctl) : fakeUpstream(cfg, [])) },
    });
    token = await gw.token('alice', ['eng']);
  });
  afterAll(async () => {
    release();
    await gw.close();
  });

  const head = (len: number) =>
    `POST /mcp/http HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${len}\r\n\r\n`;

  it('a body dripped a byte at a time gets 408 REQUEST_TIMEOUT and is closed, while other clients are served', async () => {
    const body = init();
    const dripping = drip(gw.url, head(body.length + 10_000) + body, ' ');
    // Meanwhile, an ordinary client is served.
    expect((await post(mcp(), token, init(1))).status).toBe(200);
    const r = await dripping;
    expect(r.status).toBe(408);
    expect(r.body?.error).toMatchObject({ code: -32600, data: { gitgate: 'REQUEST_TIMEOUT' } });
    expect(r.body?.error?.message).toMatch(/server.requestTimeoutMs/);
    expect(r.closed).toBe(true);
    expect(r.sent).toBeLessThan(500);
  });

  it('headers dripped a line at a time get 408 as well', async () => {
    const r = await drip(gw.url, 'POST /mcp/http HTTP/1.1\r\nHost: localhost\r\n', 'x-a: b\r\n');
    expect(r.status).toBe(408);
    expect(r.closed).toBe(true);
  });

  it('an idle kept-alive connection is closed after keepAliveTimeoutMs', async () => {
    const s = await rawSocket(gw.url);
    s.sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await s.until(() => s.state.data.includes('"ok"'));
    expect(s.status()).toBe(200);
    await s.until(() => s.state.closed);
    expect(s.state.closed).toBe(true);
  });

  it('SSE responses (a POST stream and a GET stream) outlive the request timeout', async () => {
    const init0 = await post(mcp(), token, init(2));
    const sid = init0.headers.get('mcp-session-id')!;
    const h = { ...JSON_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': sid };
    const stream = openSse(
      mcp(),
      'POST',
      { ...h, 'content-type': 'application/json' },
      call(3, 'wait', {}, { progressToken: 'w' }),
    );
    const listen = openSse(mcp(), 'GET', {
      accept: 'text/event-stream',
      authorization: `Bearer ${token}`,
      'mcp-session-id': sid,
    });
    await stream.until(() => stream.events.length > 0);
    await listen.until(() => ctl.listeners.length > 0 && listen.state.status !== 0);
    expect(stream.events[0]).toMatchObject({ method: 'notifications/progress' });
    expect(listen.state.status).toBe(200);
    // A slow client being timed out proves the deadline has passed for both streams too.
    expect((await drip(gw.url, head(100), ' ')).status).toBe(408);
    expect([stream.state.ended, listen.state.ended]).toEqual([false, false]);
    ctl.listeners[0]!.push({
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'info', data: 'still here' },
    });
    release();
    await stream.until(() => stream.events.length > 1);
    await listen.until(() => listen.events.length > 0);
    expect(stream.events[1]).toMatchObject({ id: 3, result: { content: [{ text: 'released' }] } });
    expect(listen.events[0]).toMatchObject({ params: { data: 'still here' } });
    stream.close();
    listen.close();
  });

  it('a held approval (holdSeconds 1 > requestTimeoutMs) streams progress and answers with the approval link', async () => {
    const i = await post(`${gw.url}/mcp/stdio`, token, init(4));
    const sid = i.headers.get('mcp-session-id')!;
    const held = openSse(
      `${gw.url}/mcp/stdio`,
      'POST',
      { ...JSON_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': sid },
      call(5, 'get-env', {}, { progressToken: 'a' }),
    );
    await held.until(() => held.state.ended, 1000);
    expect(held.events[0]).toMatchObject({ method: 'notifications/progress' });
    expect(held.events.at(-1)).toMatchObject({ id: 5, error: { code: -32011 } });
  });

  it('config: headersTimeoutMs may not exceed requestTimeoutMs', () => {
    const err = (() => {
      try {
        validateConfig(
          {
            server: { headersTimeoutMs: 5000, requestTimeoutMs: 1000 },
            upstreams: { a: { url: 'http://127.0.0.1:1/' } },
          },
          {},
          '/tmp',
          'test',
        );
      } catch (e) {
        return e as GatewayError;
      }
      return undefined;
    })();
    expect(err?.code).toBe('CONFIG_INVALID');
    expect(err?.message).toMatch(/server.headersTimeoutMs \(5000\) must not exceed server.requestTimeoutMs \(1000\)/);
  });
});

/** `{"a":` … nested arrays … so the whole message is exactly `depth` deep. */
function nestedArguments(depth: number, pad = ''): unknown {
  // message (1) → params (2) → arguments (3) → `depth - 3` arrays
  let v: unknown = pad === '' ? 1 : pad;
  for (let i = 0; i < depth - 3; i++) v = [v];
  return { a: v };
}

describe('JSON from clients is bounded before anything walks it', () => {
  let gw: TestGateway;
  let token: string;
  let sid: string;
  const received: JsonRpcRequest[] = [];
  const mcp = () => `${gw.url}/mcp/http`;

  beforeAll(async () => {
    process.env.GITGATE_SECURITY_WEBHOOK_SECRET = 'webhook-secret';
    gw = await startGateway({
      server: { bodyLimitBytes: 300_000 },
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      // Small records: an oversized payload is hashed as canonical JSON.
      audit: { maxRecordedBytes: 1024 },
      approvals: { webhookSecret: { fromEnv: 'GITGATE_SECURITY_WEBHOOK_SECRET' } },
      options: { connectUpstream: (cfg) => fakeUpstream(cfg, received) },
    });
    token = await gw.token('dora', ['eng']);
    sid = (await post(mcp(), token, init())).headers.get('mcp-session-id')!;
  });
  afterAll(() => gw.close());

  const send = (body: string | Buffer) => post(mcp(), token, body, { 'mcp-session-id': sid });

  it('100 000 levels of nesting → 400 -32600 naming the limit, not a 500', async () => {
    const n = 100_000;
    const r = await send(
      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":${'['.repeat(n)}${']'.repeat(n)}}}}`,
    );
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: -32600, data: { gitgate: 'INVALID_REQUEST' } });
    expect(r.json.error?.message).toBe(
      `Invalid Request: JSON nested deeper than ${MAX_JSON_DEPTH} levels (at offset ${'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":'.length + MAX_JSON_DEPTH - 3})`,
    );
    const objects = await send(`${'{"a":'.repeat(n / 5)}1${'}'.repeat(n / 5)}`);
    expect(objects.status).toBe(400);
    expect(objects.json.error?.message).toMatch(/JSON nested deeper than 64 levels/);
  });

  it(`more than ${MAX_JSON_VALUES} values (keys, elements, empty objects) → 400 -32600 before anything walks them; exactly that many pass`, async () => {
    const before = received.length;
    const head = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":';
    // The envelope: 3 containers (the message, params, arguments) and 4 members after the first of
    // theirs; n keys in the arguments add n - 1 more.
    const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":1`).join(',')}}`;
    const room = MAX_JSON_VALUES - 6;
    const ok = await send(`${head}${keys(room)}}}`);
    expect(ok.status).toBe(200);
    expect(received.length).toBe(before + 1);
    for (const args of [keys(room + 1), `[${Array.from({ length: room + 1 }, () => '{}').join(',')}]`]) {
      const r = await send(`${head}${args}}}`);
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ code: -32600, data: { gitgate: 'INVALID_REQUEST' } });
      expect(r.json.error?.message).toMatch(new RegExp(`JSON holds more than ${MAX_JSON_VALUES} values`));
    }
    expect(received.length).toBe(before + 1);
  });

  it('a number beyond what a double holds (1e400, 400 digits) → 400 -32600 naming it, not a 500; large finite ones pass', async () => {
    const head = '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"n":';
    for (const n of ['1e400', '-1E+309', `1${'0'.repeat(400)}`]) {
      const r = await send(`${head}${n}}}}`);
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ code: -32600, data: { gitgate: 'INVALID_REQUEST' } });
      expect(r.json.error?.message).toMatch(/a number beyond what a double holds/);
    }
    for (const n of ['1e308', '-0.5e-400', `1${'0'.repeat(300)}`, '123456789012345678901234567890']) {
      const r = await send(`${head}${n}}}}`);
      expect(r.status, n).toBe(200);
    }
  });

  it('the limit is exact: 64 levels pass through policy, masking, audit (canonical JSON) and the upstream; 65 do not', async () => {
    const before = received.length;
    const ok = await send(call(2, 'echo', nestedArguments(MAX_JSON_DEPTH, 'x'.repeat(2000))));
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ id: 2, result: { content: [{ text: 'called echo' }] } });
    expect(received.slice(before).map((m) => m.params?.arguments)).toEqual([
      nestedArguments(MAX_JSON_DEPTH, 'x'.repeat(2000)),
    ]);
    const over = await send(call(3, 'echo', nestedArguments(MAX_JSON_DEPTH + 1)));
    expect(over.status).toBe(400);
    expect(received.length).toBe(before + 1);
  });

  it('a 64-deep high-risk call is parked (structuredClone, masking, canonical call id) and answered, not a 500', async () => {
    const r = await send(call(4, 'get-env', nestedArguments(MAX_JSON_DEPTH)));
    expect(r.status).toBe(200);
    expect(r.json.error).toMatchObject({ code: -32011 });
  });

  it('client responses and notifications are bounded the same way', async () => {
    // One level less of wrapping than a request's arguments: two more arrays to go over.
    const deep = nestedArguments(MAX_JSON_DEPTH + 2);
    for (const m of [
      { jsonrpc: '2.0', id: 'x', result: deep },
      { jsonrpc: '2.0', method: 'notifications/progress', params: deep },
    ]) {
      const r = await send(JSON.stringify(m));
      expect(r.status).toBe(400);
      expect(r.json.error?.message).toMatch(/nested deeper than 64 levels/);
    }
  });

  it('made-up method names do not grow the metrics label set', async () => {
    for (let i = 0; i < 50; i++) await send(JSON.stringify({ jsonrpc: '2.0', id: 100 + i, method: `made-up/${i}` }));
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).not.toMatch(/made-up/);
    expect(metrics).toMatch(/gitgate_requests_total\{upstream="http",method="\(other\)",outcome="policy_denied"\} 50/);
    expect(metrics).toMatch(/gitgate_requests_total\{upstream="http",method="initialize",outcome="ok"\} \d+/);
  });

  it('a body that is not UTF-8 → 400 -32700 (nothing silently becomes U+FFFD)', async () => {
    const before = received.length;
    const body = Buffer.concat([
      Buffer.from('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ech'),
      Buffer.from([0xff]),
      Buffer.from('o"}}'),
    ]);
    const r = await send(body);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: -32700, message: 'Parse error: body is not valid UTF-8' });
    expect(received.length).toBe(before);
  });

  it.each([
    ['the method', '{"jsonrpc":"2.0","id":6,"method":"tools/call","method":"tools/list"}', 'method'],
    [
      'the tool name',
      '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","name":"get-env"}}',
      'name',
    ],
    [
      'an escaped spelling of the same key',
      '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","n\\u0061me":"get-env"}}',
      'name',
    ],
    [
      'a nested argument',
      '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"cmd":"ls","cmd":"rm -rf /"}}}',
      'cmd',
    ],
  ])(
    'a duplicate key (%s) → 400: the policy and the upstream cannot read different values',
    async (_name, body, key) => {
      const before = received.length;
      const r = await send(body);
      expect(r.status).toBe(400);
      expect(r.json.error?.code).toBe(-32600);
      expect(r.json.error?.message).toMatch(new RegExp(`duplicate key "${key}" in one object`));
      expect(received.length).toBe(before);
    },
  );

  it('a __proto__ key → 400, and nothing is polluted', async () => {
    const r = await send(
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"__proto__":{"name":"get-env"},"arguments":{}}}',
    );
    expect(r.status).toBe(400);
    expect(r.json.error?.message).toMatch(/key "__proto__" is not accepted/);
    const escaped = await send(
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"\\u005f_proto__":{"polluted":true}}}}',
    );
    expect(escaped.status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).name).toBeUndefined();
  });

  it('webhook bodies are bounded too (depth after the signature; size by the body limit)', async () => {
    const deep = `{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`;
    const hook = (body: string, extra: Record<string, string> = {}) =>
      fetch(`${gw.url}/webhooks/github`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'ping',
          'x-github-delivery': `d-${body.length}`,
          'x-hub-signature-256': signBody('webhook-secret', body),
          ...extra,
        },
        body,
      });
    const r = await hook(deep);
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toMatch(/nested deeper than 64 levels/);
    const big = await hook(JSON.stringify({ pad: 'x'.repeat(400_000) }));
    expect(big.status).toBe(413);
  });

  it(`checkJsonText agrees with JSON.parse on depth, duplicates and forbidden keys (seed ${SEED})`, () => {
    const depthOf = (v: unknown): number => {
      let max = 0;
      const stack: [unknown, number][] = [[v, 1]];
      while (stack.length > 0) {
        const [x, d] = stack.pop()!;
        if (x === null || typeof x !== 'object') continue;
        max = Math.max(max, d);
        for (const c of Object.values(x)) stack.push([c, d + 1]);
      }
      return max;
    };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.nat({ max: 10 }), fc.constantFrom(0, 2), (v, limit, indent) => {
        const text = JSON.stringify(v, null, indent);
        const problem = checkJsonText(text, { maxDepth: limit });
        expect(problem === undefined).toBe(depthOf(v) <= limit);
      }),
      { seed: SEED, numRuns: 500 },
    );
    // Objects written by hand: keys maybe escaped, maybe repeated; strings full of brackets and quotes.
    const key = fc.constantFrom('a', 'b', 'n', '[', '{"', '\\', '__proto__');
    const escaped = (k: string, how: number) =>
      how === 0
        ? JSON.stringify(k)
        : `"${[...k].map((ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, fc.nat({ max: 1 }), fc.string({ maxLength: 6 })), { maxLength: 6 }),
        (entries) => {
          const text = `{"wrap":[{${entries.map(([k, how, v]) => `${escaped(k, how)}:${JSON.stringify(v)}`).join(',')}}]}`;
          const keys = entries.map(([k]) => k);
          const dup = new Set(keys).size !== keys.length;
          const dupProblem = checkJsonText(text, { maxDepth: 64, rejectDuplicateKeys: true });
          expect(dupProblem?.kind === 'duplicate-key').toBe(dup);
          const protoProblem = checkJsonText(text, { maxDepth: 64, forbiddenKeys: ['__proto__'] });
          expect(protoProblem?.kind === 'forbidden-key').toBe(keys.includes('__proto__'));
          expect(JSON.parse(text)).toBeTypeOf('object');
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe('sessions are capped per caller under the upstream cap', () => {
  let gw: TestGateway;
  let gate!: () => void;
  let opened = 0;
  const gateOpen = new Promise<void>((r) => (gate = r));
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    gw = await startGateway({
      upstreams: {
        http: { url: 'http://127.0.0.1:9/unused', maxSessions: 10 },
        slow: { url: 'http://127.0.0.1:9/unused', maxSessions: 10 },
      },
      options: {
        connectUpstream: (cfg) => {
          const inner = fakeUpstream(cfg, []);
          if (cfg.name !== 'slow') return inner;
          // `slow` opens a session only when the test says so: initializes pile up in flight.
          return {
            ...inner,
            open: async () => {
              opened++;
              await gateOpen;
              return inner.open();
            },
          };
        },
      },
    });
    for (const who of ['mallory', 'alice', 'bob', 'eve']) tokens[who] = await gw.token(who, ['eng']);
  });
  afterAll(() => gw.close());

  const initialize = (who: string, upstream = 'http') => post(`${gw.url}/mcp/${upstream}`, tokens[who]!, init());

  it('one caller cannot take every slot: its 9th session is SESSION_QUOTA (429), others still get in', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await initialize('mallory');
      expect(r.status).toBe(200);
      mine.push(r.headers.get('mcp-session-id')!);
    }
    const ninth = await initialize('mallory');
    expect(ninth.status).toBe(429);
    expect(ninth.json.error).toMatchObject({
      code: -32007,
      data: { gitgate: 'SESSION_QUOTA', quota: 'maxSessionsPerCaller', limit: 8 },
    });
    expect(ninth.json.error?.message).toBe(
      'caller mallory already holds 8 sessions on upstream http (upstreams.http.maxSessionsPerCaller); end one with DELETE or wait until one idles out',
    );
    // Refused, not made room for: all eight of mallory's sessions still work.
    for (const sid of mine)
      expect(
        (await post(`${gw.url}/mcp/http`, tokens.mallory!, call(1, 'echo', {}), { 'mcp-session-id': sid })).status,
      ).toBe(200);
    expect((await initialize('alice')).status).toBe(200);
    expect((await initialize('bob')).status).toBe(200);
    // The upstream-wide cap still holds (8 + 1 + 1 = 10).
    const full = await initialize('eve');
    expect(full.status).toBe(503);
    expect(full.json.error?.data).toMatchObject({ gitgate: 'SESSION_LIMIT' });
    // DELETE gives a slot back to its owner.
    const del = await fetch(`${gw.url}/mcp/http`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${tokens.mallory!}`, 'mcp-session-id': mine[0]! },
    });
    expect(del.status).toBe(204);
    expect((await initialize('mallory')).status).toBe(200);
    // Idle sessions end (the sweep at a later instant) and their slots come back.
    await gw.gw.sessions.sweep(Date.now() + 900_001);
    expect(gw.gw.sessions.countFor('http')).toBe(0);
    expect((await initialize('eve')).status).toBe(200);
  });

  it('concurrent initializes cannot all pass the check before any session exists', async () => {
    const replies: Reply[] = [];
    const all = Array.from({ length: 20 }, () =>
      initialize('mallory', 'slow').then((r) => {
        replies.push(r);
        return r;
      }),
    );
    // Every initialize is either waiting for the upstream or already answered (bounded wait).
    for (let i = 0; i < 500 && opened + replies.length < 20; i++) await tick();
    gate();
    const done = await Promise.all(all);
    expect(done.filter((r) => r.status === 200)).toHaveLength(8);
    expect(done.filter((r) => r.status === 429)).toHaveLength(12);
    expect(gw.gw.sessions.countFor('slow', 'mallory')).toBe(8);
  });
});

describe('input-required rounds held for 2026 callers are shared fairly', () => {
  let gw: TestGateway;
  let upstream: { url: string; close(): Promise<void> };

  beforeAll(async () => {
    // A 2025-only upstream: its sampling request parks the call on the shared session until the caller retries.
    upstream = await startHttpServer();
    gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const ask = async (token: string, id: number, retry: Record<string, unknown> = {}) => {
    const res = await fetch(`${gw.url}/mcp/http`, {
      method: 'POST',
      headers: {
        ...JSON_HEADERS,
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'ask-llm',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: {
          name: 'ask-llm',
          arguments: { prompt: 'p' },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
          },
          ...retry,
        },
      }),
    });
    const text = await res.text();
    const data = text.startsWith('{')
      ? text
      : (
          text
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .pop() ?? ''
        ).slice(6);
    return JSON.parse(data) as Reply['json'] & { result?: { resultType?: string; requestState?: string } };
  };
  const answer = (requestState: string) => ({
    requestState,
    inputResponses: { upstream_request: { role: 'assistant', content: { type: 'text', text: 'X' }, model: 'm' } },
  });

  it("one caller's flood of rounds gives up its own oldest, never another caller's held round", async () => {
    const alice = await gw.token('alice', ['eng']);
    const mallory = await gw.token('mallory', ['eng']);
    const aliceState = (await ask(alice, 1)).result?.requestState;
    expect(aliceState).toBeTypeOf('string');
    // As many rounds as the upstream holds in all: before, they pushed alice's out (her retry was -32602).
    const mine: string[] = [];
    for (let i = 0; i < 64; i++) {
      const r = await ask(mallory, 100 + i);
      expect(r.result?.resultType).toBe('input_required');
      mine.push(r.result!.requestState!);
    }
    expect((await ask(alice, 1, answer(aliceState!))).result).toMatchObject({
      content: [{ type: 'text', text: 'model said: X' }],
    });
    // Mallory's share is what she lost: her first round is given up, her newest still answers.
    expect((await ask(mallory, 100, answer(mine[0]!))).error).toMatchObject({ code: -32602 });
    expect((await ask(mallory, 163, answer(mine[63]!))).result).toMatchObject({
      content: [{ type: 'text', text: 'model said: X' }],
    });
  });
});

describe('2026-07-28 subscriptions/listen streams are capped like the sessions they replace', () => {
  let gw: TestGateway;
  let upstream: http.Server;
  let held = 0;

  beforeAll(async () => {
    // A 2026-07-28 upstream: each listen stream is acknowledged and then held open, one upstream socket each.
    upstream = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const msg = JSON.parse(body || '{}') as JsonRpcRequest;
        if (msg.method === 'subscriptions/listen') {
          held++;
          res.on('close', () => held--);
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(
            `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: {} } })}\n\n`,
          );
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg.id,
            result: msg.method === 'server/discover' ? { supportedVersions: ['2026-07-28'], capabilities: {} } : {},
          }),
        );
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as net.AddressInfo).port;
    gw = await startGateway({
      upstreams: { http: { url: `http://127.0.0.1:${port}/mcp`, maxSessions: 3, maxSessionsPerCaller: 2 } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    upstream?.closeAllConnections();
    await new Promise((r) => upstream?.close(r));
  });

  const listen = async (token: string, ctl: AbortController) => {
    const res = await fetch(`${gw.url}/mcp/http`, {
      method: 'POST',
      signal: ctl.signal,
      headers: {
        ...JSON_HEADERS,
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'subscriptions/listen',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'subscriptions/listen',
        params: {
          notifications: { toolsListChanged: true },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': {},
          },
        },
      }),
    });
    return res;
  };

  it("one caller's listens stop at its quota and all listens at the upstream's cap; a closed one frees its slot", async () => {
    const mallory = await gw.token('mallory', ['eng']);
    const alice = await gw.token('alice', ['eng']);
    const open: AbortController[] = [];
    const hold = async (token: string) => {
      const ctl = new AbortController();
      const res = await listen(token, ctl);
      open.push(ctl);
      return res;
    };
    try {
      for (let i = 0; i < 2; i++)
        expect((await hold(mallory)).headers.get('content-type')).toContain('text/event-stream');
      for (let i = 0; i < 500 && held < 2; i++) await tick();
      // Before: every further listen was one more upstream socket held open for as long as the caller liked.
      const third = await hold(mallory);
      expect(third.status).toBe(429);
      expect(await third.json()).toMatchObject({ error: { code: -32007, data: { gitgate: 'SESSION_QUOTA' } } });
      expect((await hold(alice)).status).toBe(200);
      const full = await hold(alice);
      expect(full.status).toBe(503);
      expect(await full.json()).toMatchObject({ error: { data: { gitgate: 'SESSION_LIMIT' } } });
      for (let i = 0; i < 500 && held < 3; i++) await tick();
      expect(held).toBe(3);
      // Mallory closes one: her slot comes back once gitgate has let go of it.
      open[0]!.abort();
      let again: Response | undefined;
      for (let i = 0; i < 200; i++) {
        again = await hold(mallory);
        if (again.status === 200) break;
        await again.body?.cancel();
        await tick(20);
      }
      expect(again?.status).toBe(200);
    } finally {
      for (const c of open) c.abort();
    }
  });
});

describe('a session has one live GET stream', () => {
  let gw: TestGateway;
  let upstream: http.Server;
  let held = 0;

  beforeAll(async () => {
    // A session-era upstream that lets a session hold any number of GET streams, each open until closed.
    upstream = http.createServer((req, res) => {
      if (req.method === 'GET') {
        held++;
        res.on('close', () => held--);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': open\n\n');
        return;
      }
      if (req.method !== 'POST') {
        res.writeHead(200).end();
        return;
      }
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const msg = JSON.parse(body) as JsonRpcRequest;
        if (msg.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'u1' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg.id,
            result:
              msg.method === 'initialize'
                ? { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'u', version: '1' } }
                : {},
          }),
        );
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as net.AddressInfo).port;
    gw = await startGateway({ upstreams: { http: { url: `http://127.0.0.1:${port}/mcp` } } });
  });
  afterAll(async () => {
    await gw?.close();
    upstream?.closeAllConnections();
    await new Promise((r) => upstream?.close(r));
  });

  it('a new GET on a session ends the one before (and its upstream GET): a session cannot hold upstream sockets without bound', async () => {
    const token = await gw.token('mallory', ['eng']);
    const url = `${gw.url}/mcp/http`;
    const opened = await post(url, token, init());
    const sid = opened.headers.get('mcp-session-id')!;
    const streams: { ctl: AbortController; ended: Promise<boolean> }[] = [];
    const get = async () => {
      const ctl = new AbortController();
      const res = await fetch(url, {
        signal: ctl.signal,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'text/event-stream',
          'mcp-session-id': sid,
          'mcp-protocol-version': '2025-11-25',
        },
      });
      expect(res.status).toBe(200);
      // Resolves true when gitgate ends this stream.
      const ended = (async () => {
        try {
          for await (const _ of res.body as AsyncIterable<Uint8Array>);
          return true;
        } catch {
          return false;
        }
      })();
      streams.push({ ctl, ended });
    };
    try {
      for (let i = 0; i < 5; i++) await get();
      // Before: five upstream GETs held open for one session, and so on for every session a caller opens.
      for (let i = 0; i < 500 && held !== 1; i++) await tick();
      expect(held).toBe(1);
      for (const s of streams.slice(0, 4)) expect(await s.ended).toBe(true);
    } finally {
      for (const s of streams) s.ctl.abort();
    }
  });
});

describe('HTTP framing, headers and connections', () => {
  let gw: TestGateway;
  let capped: TestGateway;
  let demo: {
    url: string;
    received: { message: { method?: string }; headers: Record<string, string> }[];
    close(): Promise<void>;
  };
  let token: string;

  beforeAll(async () => {
    demo = await startHttpServer();
    gw = await startGateway({
      server: { bodyLimitBytes: 4096 },
      upstreams: { demo: { url: demo.url } },
      options: { connectUpstream: (cfg) => httpConnector({ ...cfg, url: cfg.url! }) },
    });
    capped = await startGateway({
      server: { maxConnectionsPerClient: 4 },
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      options: { connectUpstream: (cfg) => fakeUpstream(cfg, []) },
    });
    token = await gw.token('alice', ['eng']);
  });
  afterAll(async () => {
    await gw.close();
    await capped.close();
    await demo.close();
  });

  const exchange = async (url: string, bytes: string) => {
    const s = await rawSocket(url);
    s.sock.write(bytes);
    await s.until(() => s.state.closed || s.state.data.includes('}'));
    await s.until(() => s.state.closed, 50);
    s.sock.destroy();
    return {
      status: s.status(),
      body: s.state.data.includes('\r\n\r\n{') ? s.body() : undefined,
      closed: s.state.closed,
    };
  };
  const head = (extra: string) =>
    `POST /mcp/demo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n${extra}\r\n`;

  it('a body shorter than its Content-Length (then EOF) → 400, closed', async () => {
    const s = await rawSocket(gw.url);
    s.sock.write(`${head('Content-Length: 500\r\n')}{"jsonrpc":"2.0"`);
    s.sock.end();
    await s.until(() => s.state.closed);
    expect(s.status()).toBe(400);
    expect(s.state.closed).toBe(true);
  });

  it('a POST without a valid token is refused before its body is read: 401 at once, the connection closed, nothing held', async () => {
    for (const auth of ['', 'Authorization: Bearer not-a-token\r\n']) {
      const s = await rawSocket(gw.url);
      // A 4 KiB body announced, one byte of it sent: the answer does not wait for the rest.
      s.sock.write(
        `POST /mcp/demo HTTP/1.1\r\nHost: localhost\r\n${auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 4000\r\n\r\n{`,
      );
      await s.until(() => s.state.closed);
      expect(s.status()).toBe(401);
      expect(s.state.data.toLowerCase()).toContain('connection: close');
      expect(s.body().error?.data?.gitgate).toMatch(/^AUTH_(REQUIRED|INVALID)$/);
      expect(s.state.closed).toBe(true);
      s.sock.destroy();
    }
    // Each refusal is an exchange like any other: counted (and recorded) with its outcome.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/gitgate_requests_total\{upstream="demo",method="POST",outcome="auth_required"\} [1-9]/);
    expect(metrics).toMatch(/gitgate_requests_total\{upstream="demo",method="POST",outcome="auth_invalid"\} [1-9]/);
  });

  it('the bodies being read, all clients together, stay within server.maxBufferedBodyBytes: past it 503 SERVER_BUSY, closed; the budget comes back', async () => {
    const small = await startGateway({
      server: { maxBufferedBodyBytes: 8192 },
      upstreams: { demo: { url: demo.url } },
      options: { connectUpstream: (cfg) => httpConnector({ ...cfg, url: cfg.url! }) },
    });
    try {
      const bearer = await small.token('alice', ['eng']);
      const body = init().padEnd(6000, ' ');
      const headOf = (n: number) =>
        `POST /mcp/demo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${bearer}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${n}\r\n\r\n`;
      // Two clients send 5000 bytes of their bodies each, and wait: together they would pass the budget.
      const a = await rawSocket(small.url);
      const b = await rawSocket(small.url);
      a.sock.write(headOf(body.length) + body.slice(0, 5000));
      b.sock.write(headOf(body.length) + body.slice(0, 5000));
      await a.until(() => a.state.closed || b.state.closed);
      // One of them is refused, not buffered; the other goes on and is answered.
      const [refused, held] = a.state.closed ? [a, b] : [b, a];
      expect(refused.status()).toBe(503);
      expect(refused.body().error?.data?.gitgate).toBe('SERVER_BUSY');
      expect(refused.state.data.toLowerCase()).toContain('retry-after: 1');
      expect(held.state.closed).toBe(false);
      held.sock.write(body.slice(5000));
      await held.until(() => held.state.data.includes('}'));
      expect(held.status()).toBe(200);
      refused.sock.destroy();
      held.sock.destroy();
      // The budget is back for the next.
      await held.until(() => held.state.closed, 50);
      // (its two bodies are given back as their connections close: asked until then, bounded)
      let third = await post(`${small.url}/mcp/demo`, bearer, body);
      for (let i = 0; i < 50 && third.status === 503; i++) {
        await tick();
        third = await post(`${small.url}/mcp/demo`, bearer, body);
      }
      expect(third.status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('no body is read without reason: an unknown route, a webhook without a signature of its form, refused at once; signed-looking webhooks have a budget of their own', async () => {
    process.env.GITGATE_BUDGET_WEBHOOK_SECRET = 'budget-secret';
    const small = await startGateway({
      server: { bodyLimitBytes: 4096, maxBufferedBodyBytes: 16384 },
      upstreams: { demo: { url: demo.url } },
      approvals: { webhookSecret: { fromEnv: 'GITGATE_BUDGET_WEBHOOK_SECRET' } },
      options: { connectUpstream: (cfg) => httpConnector({ ...cfg, url: cfg.url! }) },
    });
    const open: Awaited<ReturnType<typeof rawSocket>>[] = [];
    try {
      const stalled = async (head: string) => {
        const s = await rawSocket(small.url);
        open.push(s);
        s.sock.write(`${head}Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n${'x'.repeat(3000)}`);
        return s;
      };
      for (const head of [
        'POST /no-such-route HTTP/1.1\r\nHost: localhost\r\n',
        'POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: d1\r\n',
        'POST /healthz HTTP/1.1\r\nHost: localhost\r\n',
      ]) {
        const s = await stalled(head);
        await s.until(() => s.state.closed);
        expect([404, 401]).toContain(s.status());
        expect(s.state.closed).toBe(true);
      }
      // Webhooks that look signed are read (their HMAC needs the body), within a quarter of the budget.
      const signed = `POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nX-Hub-Signature-256: sha256=${'0'.repeat(64)}\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: d2\r\n`;
      const first = await stalled(signed);
      const second = await stalled(signed);
      await second.until(() => second.state.closed || first.state.closed);
      const busy = first.state.closed ? first : second;
      expect(busy.status()).toBe(503);
      expect(busy.body().error?.data?.gitgate).toBe('SERVER_BUSY');
      // Meanwhile callers are served: webhooks cannot take the MCP bodies' budget.
      const bearer = await small.token('alice', ['eng']);
      const served = await post(`${small.url}/mcp/demo`, bearer, init());
      expect(served.status).toBe(200);
    } finally {
      for (const s of open) s.sock.destroy();
      await small.close();
    }
  });

  it('a body longer than its Content-Length: the rest is not a request; 400, closed', async () => {
    const r = await exchange(gw.url, `${head('Content-Length: 5\r\n')}${init()}`);
    expect(r.status).toBe(400);
    expect(r.closed).toBe(true);
  });

  it('Content-Length together with Transfer-Encoding (smuggling) → 400, closed', async () => {
    const r = await exchange(gw.url, `${head('Content-Length: 4\r\nTransfer-Encoding: chunked\r\n')}0\r\n\r\n`);
    expect(r.status).toBe(400);
    expect(r.body?.error).toMatchObject({ code: -32600, data: { gitgate: 'INVALID_REQUEST' } });
    expect(r.closed).toBe(true);
  });

  it('a chunked body over the limit → 413 without reading it all', async () => {
    const chunk = 'x'.repeat(2000);
    const r = await exchange(
      gw.url,
      `${head('Transfer-Encoding: chunked\r\n')}${`${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(5)}`,
    );
    expect(r.status).toBe(413);
    expect(r.body?.error?.data).toMatchObject({ gitgate: 'BODY_TOO_LARGE' });
  });

  it('headers over 16 KiB (many small ones, or one huge) → 431 HEADERS_TOO_LARGE, closed', async () => {
    const many = Array.from({ length: 3000 }, (_, i) => `x-h${i}: v\r\n`).join('');
    for (const extra of [many, `x-big: ${'a'.repeat(17_000)}\r\n`]) {
      const r = await exchange(gw.url, head(`${extra}Content-Length: 2\r\n`));
      expect(r.status).toBe(431);
      expect(r.body?.error?.data).toMatchObject({ gitgate: 'HEADERS_TOO_LARGE' });
      expect(r.closed).toBe(true);
    }
  });

  it('a header value with a bare CR → 400 before any route; no client header reaches the upstream', async () => {
    const r = await exchange(gw.url, head(`x-evil: a\rInjected: 1\r\nContent-Length: 2\r\n`) + '{}');
    expect(r.status).toBe(400);
    const before = demo.received.length;
    const res = await fetch(`${gw.url}/mcp/demo`, {
      method: 'POST',
      headers: {
        ...JSON_HEADERS,
        authorization: `Bearer ${token}`,
        'x-evil': 'a',
        'x-forwarded-for': '10.0.0.1',
        cookie: 'c=1',
        'mcp-session-id': 'attacker-chosen',
      },
      body: init(),
    });
    expect(res.status).toBe(200);
    const got = demo.received.slice(before).map((x) => x.headers);
    expect(got.length).toBeGreaterThan(0);
    for (const h of got) {
      expect(Object.keys(h).filter((k) => ['x-evil', 'x-forwarded-for', 'cookie'].includes(k))).toEqual([]);
      expect(h['mcp-session-id']).not.toBe('attacker-chosen');
      expect(h.authorization).not.toBe(`Bearer ${token}`);
    }
  });

  it('connections per client address are capped: one more is answered 503 and closed; a freed slot is reusable', async () => {
    const held = await Promise.all(Array.from({ length: 4 }, () => rawSocket(capped.url)));
    // Each connection is known to the server once it has answered on it.
    for (const s of held) s.sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    for (const s of held) await s.until(() => s.status() !== undefined);
    expect(held.map((s) => s.status())).toEqual([200, 200, 200, 200]);
    // One more, with a request sent at once: refused, and the request never runs.
    const extra = await rawSocket(capped.url);
    const body = init();
    extra.sock.write(
      `POST /mcp/http HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${await capped.token('alice', ['eng'])}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await extra.until(() => extra.state.closed);
    expect(extra.status()).toBe(503);
    expect(extra.body().error).toMatchObject({ code: -32008, data: { gitgate: 'TOO_MANY_CONNECTIONS' } });
    expect(capped.gw.sessions.countFor('http')).toBe(0);
    held[0]!.sock.destroy();
    let status: number | undefined;
    for (let i = 0; i < 50 && status !== 200; i++) {
      const again = await rawSocket(capped.url);
      again.sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      await again.until(() => again.state.closed);
      status = again.status();
      again.sock.destroy();
      if (status !== 200) await tick();
    }
    expect(status).toBe(200);
    for (const s of held) s.sock.destroy();
  });
});
