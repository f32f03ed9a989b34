/**
 * Property: whatever a client sends — a request, a notification, a response, a
 * batch, a GET stream, a DELETE, in either protocol era, to an HTTP or a stdio
 * upstream — every message that reaches the upstream was decided, and an
 * allow decision for exactly that message (kind, method, target, arguments;
 * for a notification or a response the whole message) was durable in the
 * audit WAL before it arrived. The fake upstream checks this at the moment each
 * message arrives, by reading the WAL files on disk.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/canonical-json.js';
import { validateConfig } from '../../src/config/load.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { createGateway, type Gateway } from '../../src/gateway.js';
import { Channel } from '../../src/mcp/channel.js';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.js';
import type { UpstreamConnector } from '../../src/mcp/upstream/types.js';
import { durableWalRecords } from '../helpers/audit-wal.js';
import { scriptedUpstream } from '../helpers/fake-upstream.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { soakSize, testSeed } from '../helpers/soak.js';

const RUNS = soakSize(250, 3000);
const SEED = testSeed('property test');

interface Recorded {
  readonly type: string;
  readonly session?: string;
  readonly data?: { allow?: boolean; valid?: boolean; input?: { mcp?: Record<string, unknown> }; message?: unknown };
}

/** Every record durable in the WAL right now (read from disk, synchronously). */
const durableRecords = (walDir: string): Recorded[] => durableWalRecords<Recorded>(walDir);

const same = (a: unknown, b: unknown) => canonicalJson(a ?? null) === canonicalJson(b ?? null);

/** What the policy input says of a request: its target and arguments, read the way buildPolicyInput reads them. */
function requestMatches(
  m: { method: string; params?: Record<string, unknown> },
  mcp: Record<string, unknown>,
): boolean {
  if ((mcp.kind ?? 'request') !== 'request' || mcp.method !== m.method) return false;
  const p = m.params ?? {};
  switch (m.method) {
    case 'tools/call':
      return mcp.tool === p.name && same(mcp.arguments, p.arguments ?? {});
    case 'prompts/get':
      return mcp.prompt === p.name && same(mcp.arguments, p.arguments ?? {});
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return mcp.uri === p.uri;
    default:
      return true;
  }
}

/** The caller's part of a message: what gitgate adds (its credential in `_meta`, the 2026 envelope it strips) is not the caller's. */
function withoutMeta(m: JsonRpcMessage): unknown {
  if (!('params' in m) || m.params === undefined) return m;
  const { _meta: _ignored, ...params } = m.params;
  return { ...m, params };
}

describe('property: nothing reaches an upstream without a durable allow decision for exactly it', () => {
  let gw: Gateway;
  let walDir: string;
  const violations: string[] = [];
  let arrived = 0;
  let sent = 0;

  /** Called by the fake upstream for every message, at the moment it arrives. */
  function arrive(what: 'request' | 'send' | 'listen', m: JsonRpcMessage | undefined): void {
    // gitgate's own handshake (the shared session's initialize) and era discovery (server/discover): not a caller's.
    if (m !== undefined && 'id' in m && typeof m.id === 'string' && /^gitgate-(init|discover)-\d+$/.test(m.id)) return;
    arrived++;
    if (what === 'send') sent++;
    const decisions = durableRecords(walDir).filter(
      (r) => r.type === 'decision' && r.data?.allow === true && r.data.valid === true,
    );
    const ok = decisions.some((r) => {
      const mcp = r.data?.input?.mcp ?? {};
      if (what === 'listen') return mcp.method === 'subscriptions/listen';
      if (m === undefined) return false;
      if (what === 'request' && 'method' in m) return requestMatches(m, mcp);
      // A notification or response: its decision records the whole message (masking is off in this test).
      return (
        (mcp.kind === 'notification' || mcp.kind === 'response') &&
        same(withoutMeta(r.data!.message as JsonRpcMessage), withoutMeta(m))
      );
    });
    if (!ok)
      violations.push(`${what} ${JSON.stringify(m)} reached the upstream without a durable allow decision for it`);
  }

  /** A tiny upstream: answers requests, asks the client for sampling on `ask`, offers a GET stream with a log line and a sampling request. */
  function fakeConnector(cfg: UpstreamConfig, transport: 'http' | 'stdio'): UpstreamConnector {
    let serverIds = 0;
    return scriptedUpstream(
      cfg.name,
      () => {
        // The shared (stateless) session is gitgate's own: its initialize and initialized are not a caller's.
        let own = false;
        return {
          arrived(msg) {
            if (typeof msg.id === 'string' && msg.id.startsWith('gitgate-init-')) own = true;
            arrive('request', msg);
          },
          async *answer(msg) {
            if (msg.method === 'tools/call' && msg.params?.name === 'ask') {
              yield {
                jsonrpc: '2.0',
                id: `srv-${++serverIds}`,
                method: 'sampling/createMessage',
                params: { messages: [], maxTokens: 1, _meta: { progressToken: `srv-p-${serverIds}` } },
              };
              yield {
                jsonrpc: '2.0',
                method: 'notifications/progress',
                params: {
                  progressToken: (msg.params?._meta as { progressToken?: unknown } | undefined)?.progressToken ?? 0,
                  progress: 1,
                },
              };
            }
            yield {
              jsonrpc: '2.0',
              id: msg.id,
              result:
                msg.method === 'tools/list'
                  ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] }
                  : { content: [] },
            };
          },
          async send(msg) {
            if (own && 'method' in msg && msg.method === 'notifications/initialized') return;
            // On the shared session a response can only be gitgate's own refusal of an upstream request
            // (a stateless caller's answers are refused before the policy: see bypass.test.ts).
            if (own && !('method' in msg)) return;
            arrive('send', msg);
          },
          async listen(signal) {
            arrive('listen', undefined);
            const ch = new Channel<JsonRpcMessage>();
            ch.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'hello' } });
            ch.push({
              jsonrpc: '2.0',
              id: 'srv-get',
              method: 'sampling/createMessage',
              params: { messages: [], maxTokens: 1 },
            });
            signal.addEventListener('abort', () => ch.close(), { once: true });
            return ch;
          },
        };
      },
      { transport },
    );
  }

  const tokens: Record<string, string> = {};
  const sessions: Record<string, string> = {};

  beforeAll(async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-property-'));
    walDir = path.join(dataDir, 'audit-wal');
    const data = structuredClone(TEST_POLICY_DATA) as typeof TEST_POLICY_DATA & {
      upstreams: Record<string, { mask: unknown; public_tools: string[] }>;
    };
    for (const u of Object.values(data.upstreams)) {
      u.mask = []; // the recorded message is compared whole
      u.public_tools.push('ask');
    }
    const config = validateConfig(
      {
        server: { port: 0, host: '127.0.0.1' },
        dataDir,
        policy: { dir: await makePolicyDir(data) },
        approvals: { holdSeconds: 0 },
        upstreams: {
          http: { url: 'http://127.0.0.1:9/unused', maxSessions: 10_000, maxSessionsPerCaller: 10_000 },
          stdio: { stdio: { command: 'unused' }, maxSessions: 10_000, maxSessionsPerCaller: 10_000 },
        },
        log: { level: 'silent' },
      },
      {},
      dataDir,
      'property',
    );
    gw = await createGateway(config, {
      logger: pino({ level: process.env.DEBUG_PROP ? 'error' : 'silent' }),
      checkUpstreams: false,
      connectUpstream: (cfg) => fakeConnector(cfg, cfg.stdio !== undefined ? 'stdio' : 'http'),
    });
    await gw.app.ready();
    for (const [who, groups] of [
      ['alice', ['eng']],
      ['bob', []],
    ] as const) {
      tokens[who] = await gw.devIssuer!.mint({ sub: who, groups: [...groups], audience: config.identity.audience });
      for (const up of ['http', 'stdio']) {
        const init = await gw.app.inject({
          method: 'POST',
          url: `/mcp/${up}`,
          headers: {
            authorization: `Bearer ${tokens[who]}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          payload: JSON.stringify({
            jsonrpc: '2.0',
            id: 0,
            method: 'initialize',
            params: {
              protocolVersion: '2025-11-25',
              capabilities: { sampling: {} },
              clientInfo: { name: 'p', version: '1' },
            },
          }),
        });
        if (typeof init.headers['mcp-session-id'] !== 'string')
          throw new Error(`initialize ${who} ${up}: ${init.statusCode} ${init.body}`);
        sessions[`${who} ${up}`] = init.headers['mcp-session-id'];
      }
    }
    gwUrl = await gw.listen();
  });
  afterAll(() => gw.close());

  const ids = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom('srv-1', 'srv-2', 'srv-get', 'x'));
  const methods = fc.constantFrom(
    'tools/call',
    'tools/call',
    'tools/list',
    'resources/read',
    'prompts/get',
    'completion/complete',
    'ping',
    'initialize',
    'logging/setLevel',
    'server/discover',
    'notifications/initialized',
    'notifications/cancelled',
    'notifications/progress',
    'notifications/roots/list_changed',
    'notifications/other',
    'weird/method',
  );
  const params = fc.oneof(
    fc.record(
      {
        name: fc.constantFrom('echo', 'ask', 'get-env', 'secret', ''),
        arguments: fc.oneof(
          fc.dictionary(fc.constantFrom('a', 'cmd'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 2 }),
          fc.constantFrom(['rm -rf /'], 'x', null),
        ),
        uri: fc.constantFrom('test://readme', 'file:///etc/passwd'),
        requestId: ids,
        progressToken: fc.constantFrom('srv-p-1', 'srv-p-2', 'forged', 0),
        ref: fc.constantFrom({ type: 'ref/prompt', name: 'greet' }, 'nope'),
        progress: fc.constant(1),
      },
      { requiredKeys: [] },
    ),
    fc.jsonValue({ maxDepth: 1 }),
  );
  const anyMessage = fc
    .record({
      id: fc.option(ids, { nil: undefined }),
      method: fc.option(methods, { nil: undefined }),
      params: fc.option(params, { nil: undefined }),
      result: fc.option(fc.jsonValue({ maxDepth: 1 }), { nil: undefined }),
    })
    .map((m) => {
      const out: Record<string, unknown> = { jsonrpc: '2.0' };
      for (const [k, v] of Object.entries(m)) if (v !== undefined) out[k] = v;
      if (out.method === undefined && out.result === undefined) out.result = {};
      return out;
    });
  // Messages of every member mix reach the upstream only rarely as notifications or answers (an id or a
  // result is nearly always drawn): draw those kinds on their own too, so forwarded ones are checked as well.
  const notification = fc
    .record({
      method: fc.constantFrom(
        'notifications/initialized',
        'notifications/roots/list_changed',
        'notifications/cancelled',
        'notifications/progress',
        'notifications/other',
      ),
      params: fc.option(params, { nil: undefined }),
    })
    .map(
      (m): Record<string, unknown> => ({
        jsonrpc: '2.0',
        method: m.method,
        ...(m.params !== undefined ? { params: m.params } : {}),
      }),
    );
  const answer = fc
    .record({ id: ids, result: fc.jsonValue({ maxDepth: 1 }) })
    .map((m): Record<string, unknown> => ({ jsonrpc: '2.0', id: m.id, result: m.result }));
  const message = fc.oneof(anyMessage, anyMessage, notification, answer);
  const exchange = fc.record({
    verb: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'BATCH', 'GET', 'DELETE'),
    who: fc.constantFrom('alice', 'bob'),
    upstream: fc.constantFrom('http', 'stdio'),
    modern: fc.boolean(),
    message,
  });

  it('holds for random traffic on every route, message kind, era and transport', async () => {
    await fc.assert(
      fc.asyncProperty(exchange, async ({ verb, who, upstream, modern, message: m }) => {
        const h: Record<string, string> = {
          authorization: `Bearer ${tokens[who]}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        };
        if (modern) {
          const params = (
            typeof m.params === 'object' && m.params !== null && !Array.isArray(m.params) ? m.params : {}
          ) as Record<string, unknown>;
          m.params = {
            ...params,
            _meta: {
              'io.modelcontextprotocol/protocolVersion': '2026-07-28',
              'io.modelcontextprotocol/clientCapabilities': {},
            },
          };
          Object.assign(h, { 'mcp-protocol-version': '2026-07-28' });
          if (typeof m.method === 'string') h['mcp-method'] = m.method;
          const p = m.params as Record<string, unknown>;
          if (typeof p.name === 'string' && p.name !== '') h['mcp-name'] = p.name;
          else if (m.method === 'resources/read' && typeof p.uri === 'string') h['mcp-name'] = p.uri;
        } else {
          Object.assign(h, { 'mcp-session-id': sessions[`${who} ${upstream}`]!, 'mcp-protocol-version': '2025-11-25' });
        }
        if (verb === 'GET') {
          // A GET stream never ends by itself: listen on a real port and stop after its first message.
          const ctl = new AbortController();
          const res = await fetch(`${gwUrl}/mcp/${upstream}`, {
            method: 'GET',
            headers: { ...h, accept: 'text/event-stream' },
            signal: ctl.signal,
          });
          if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
            const reader = res.body!.getReader();
            await reader.read().catch(() => undefined);
          } else await res.text();
          ctl.abort();
          return;
        }
        if (verb === 'DELETE') {
          // Deleting the long-lived sessions would only shrink what the run explores: delete a fresh one.
          const init = await gw.app.inject({
            method: 'POST',
            url: `/mcp/${upstream}`,
            headers: {
              authorization: h.authorization!,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
            },
            payload: JSON.stringify({
              jsonrpc: '2.0',
              id: 0,
              method: 'initialize',
              params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'p', version: '1' } },
            }),
          });
          const sid = init.headers['mcp-session-id'];
          const res = await gw.app.inject({
            method: 'DELETE',
            url: `/mcp/${upstream}`,
            headers: { ...h, ...(typeof sid === 'string' ? { 'mcp-session-id': sid } : {}) },
          });
          expect([204, 400, 404]).toContain(res.statusCode);
          return;
        }
        const payload = JSON.stringify(verb === 'BATCH' ? [m, m] : m);
        const res = await gw.app.inject({ method: 'POST', url: `/mcp/${upstream}`, headers: h, payload });
        expect([200, 202, 400, 403, 404, 405, 406, 429, 502, 503]).toContain(res.statusCode);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(violations).toEqual([]);
    // The run explored the allowed paths too, not only refusals.
    expect(arrived).toBeGreaterThan(RUNS / 10);
    // Client notifications and answers were forwarded too (with the first generator, none ever were).
    expect(sent).toBeGreaterThan(0);
  }, 240_000);
});

let gwUrl = '';
