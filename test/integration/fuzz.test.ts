import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { createGateway, type Gateway } from '../../src/gateway.js';
import type { JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import type { DecisionEngine } from '../../src/policy/engine.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';
import { makePolicyDir } from '../helpers/policy.js';
import { soakSize, testSeed } from '../helpers/soak.js';

const RUNS = soakSize(400, 4000);
const SEED = testSeed('fuzz');

/**
 * Property: whatever bodies and headers arrive, every answer is a well-formed
 * HTTP + JSON-RPC answer, and every request the upstream receives was allowed
 * by a valid policy decision first.
 */
describe('random and mutated traffic', () => {
  let gw: Gateway;
  const received: JsonRpcRequest[] = [];
  const allowed = new Map<string, number>();
  const key = (method: string, tool: unknown) => `${method} ${typeof tool === 'string' ? tool : ''}`;
  let tokens: string[];
  let sessionId: string;

  beforeAll(async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-fuzz-'));
    const config = validateConfig(
      {
        server: { port: 0, bodyLimitBytes: 8192 },
        dataDir,
        policy: { dir: await makePolicyDir() },
        approvals: { holdSeconds: 0 },
        upstreams: { http: { url: 'http://127.0.0.1:9/unused', maxSessions: 10_000, maxSessionsPerCaller: 10_000 } },
      },
      {},
      dataDir,
      'fuzz',
    );
    const recording = (engine: DecisionEngine): DecisionEngine => ({
      current() {
        const inst = engine.current();
        if (inst === undefined) return undefined;
        const evaluate = (input: PolicyInput) => {
          const d = inst.evaluate(input);
          if (d.valid && d.allow && !d.approval.required) {
            const k = key(input.mcp.method, input.mcp.tool ?? input.mcp.prompt ?? input.mcp.uri);
            allowed.set(k, (allowed.get(k) ?? 0) + 1);
          }
          return d;
        };
        return {
          revision: inst.revision,
          evaluate,
          evaluateJson: (json: ArrayBuffer) => evaluate(JSON.parse(new TextDecoder().decode(json)) as PolicyInput),
        };
      },
    });
    gw = await createGateway(config, {
      logger: pino({ level: 'silent' }),
      checkUpstreams: false,
      connectUpstream: (cfg) => fakeUpstream(cfg, received),
      wrapPolicy: recording,
    });
    await gw.app.ready();
    tokens = [
      await gw.devIssuer!.mint({ sub: 'alice', groups: ['eng'], audience: 'gitgate' }),
      await gw.devIssuer!.mint({ sub: 'bob', audience: 'gitgate' }),
    ];
    const init = await gw.app.inject({
      method: 'POST',
      url: '/mcp/http',
      headers: {
        authorization: `Bearer ${tokens[0]}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      payload: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'f', version: '1' } },
      }),
    });
    sessionId = init.headers['mcp-session-id'] as string;
    expect(sessionId).toBeTruthy();
  });
  afterAll(() => gw.close());

  const toolName = fc.constantFrom(
    'echo',
    'secret',
    'get-env',
    'progress',
    'add',
    '',
    'x'.repeat(128),
    'x'.repeat(300),
  );
  const envelope = fc.constantFrom(
    undefined,
    { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' },
    { 'io.modelcontextprotocol/protocolVersion': '1999-01-01' },
    { progressToken: 1 },
  );
  const id = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.double(), fc.boolean());
  const validish = fc.record(
    {
      jsonrpc: fc.constantFrom('2.0', '2.0', '2.0', '1.0', 2),
      id,
      method: fc.constantFrom(
        'initialize',
        'tools/call',
        'tools/list',
        'resources/read',
        'prompts/get',
        'ping',
        'server/discover',
        'notifications/initialized',
        'notifications/cancelled',
        'weird/method',
      ),
      params: fc.oneof(
        fc.record(
          {
            name: toolName,
            arguments: fc.oneof(
              fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 })),
              fc.jsonValue({ maxDepth: 1 }),
            ),
            _meta: envelope,
          },
          { requiredKeys: [] },
        ),
        fc.record({
          protocolVersion: fc.constantFrom('2025-11-25', '2025-06-18', 'nope'),
          capabilities: fc.constant({}),
          clientInfo: fc.constant({ name: 'f', version: '1' }),
        }),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      result: fc.jsonValue({ maxDepth: 2 }),
      error: fc.oneof(fc.record({ code: fc.integer(), message: fc.string() }), fc.jsonValue({ maxDepth: 1 })),
    },
    { requiredKeys: [] },
  );
  const body = fc.oneof(
    { weight: 5, arbitrary: validish.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.array(validish, { maxLength: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
    { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: validish.chain((v) => fc.nat({ max: 50 }).map((cut) => JSON.stringify(v).slice(0, cut))) },
    { weight: 1, arbitrary: fc.string({ minLength: 9000, maxLength: 9100 }) },
  );
  const headers = fc.record(
    {
      'content-type': fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        '',
      ),
      accept: fc.constantFrom(
        'application/json, text/event-stream',
        'application/json',
        'text/event-stream',
        '*/*',
        'text/html',
      ),
      authorization: fc.oneof(
        fc.constantFrom('alice', 'bob').map((who) => `Bearer ${who}`),
        fc.constantFrom('Bearer abc.def.ghi', 'Basic Zm9vOmJhcg==', 'Bearer ', 'bearer'),
      ),
      'mcp-session-id': fc.constantFrom('SESSION', 'not-a-session', ''),
      'mcp-protocol-version': fc.constantFrom('2025-11-25', '2026-07-28', '2025-06-18', 'garbage'),
      'mcp-method': fc.constantFrom('tools/call', 'tools/list', 'x'),
      'mcp-name': fc.oneof(toolName, fc.constant('=?base64?ZWNobw==?=')),
      origin: fc.constantFrom('https://evil.example', 'http://localhost:5173', 'null'),
    },
    { requiredKeys: [] },
  );

  // Near-valid traffic: good headers for one of the callers, a well-formed request of a random method and tool.
  const nearValid = fc
    .record({
      who: fc.constantFrom('alice', 'bob'),
      modern: fc.boolean(),
      id: fc.oneof(fc.integer(), fc.string({ maxLength: 6 })),
      method: fc.constantFrom(
        'tools/call',
        'tools/call',
        'tools/list',
        'resources/read',
        'prompts/get',
        'ping',
        'server/discover',
        'weird/method',
      ),
      name: toolName,
      args: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    })
    .map(({ who, modern, id, method, name, args }) => {
      const params: Record<string, unknown> = method === 'resources/read' ? { uri: name } : { name, arguments: args };
      const h: Record<string, string> = {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${who}`,
      };
      if (modern) {
        params._meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' };
        Object.assign(h, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': method });
        if (['tools/call', 'prompts/get', 'resources/read'].includes(method)) h['mcp-name'] = name;
      } else h['mcp-session-id'] = 'SESSION';
      return {
        method: 'POST',
        upstream: 'http',
        hdrs: h,
        payload: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
      };
    });
  const anything = fc.record({
    method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'GET', 'DELETE'),
    upstream: fc.constantFrom('http', 'http', 'http', 'nope'),
    hdrs: headers,
    payload: body,
  });

  it(`answers ${RUNS} random requests well-formed, and forwards only allowed requests`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ weight: 2, arbitrary: anything }, { weight: 1, arbitrary: nearValid }),
        async ({ method, upstream, hdrs, payload }) => {
          const h: Record<string, string> = {};
          for (const [k, v] of Object.entries(hdrs as Record<string, string | undefined>)) {
            if (v === undefined) continue;
            if (k === 'authorization') h[k] = v.replace('alice', tokens[0]!).replace('bob', tokens[1]!);
            else if (k === 'mcp-session-id') h[k] = v === 'SESSION' ? sessionId : v;
            else if (v !== '') h[k] = v;
          }
          // Never DELETE the shared session: that would only shrink what the run explores.
          if (method === 'DELETE' && h['mcp-session-id'] === sessionId) h['mcp-session-id'] = 'not-a-session';
          const res = await gw.app.inject({
            method: method as 'POST',
            url: `/mcp/${upstream}`,
            headers: h,
            ...(method === 'POST' ? { payload } : {}),
          });
          expect([200, 202, 204, 400, 401, 403, 404, 405, 406, 413, 415, 502, 503, 504]).toContain(res.statusCode);
          if (res.statusCode === 401) expect(res.headers['www-authenticate']).toMatch(/^Bearer resource_metadata="/);
          if (res.statusCode === 202 || res.statusCode === 204) {
            expect(res.body).toBe('');
            return;
          }
          const ct = String(res.headers['content-type'] ?? '');
          const messages = ct.includes('text/event-stream')
            ? res.body
                .split('\n')
                .filter((l) => l.startsWith('data: '))
                .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
            : [JSON.parse(res.body) as Record<string, unknown>];
          expect(messages.length).toBeGreaterThan(0);
          for (const m of messages) {
            expect(m.jsonrpc).toBe('2.0');
            if ('error' in m) {
              const e = m.error as { code: unknown; message: unknown };
              expect(Number.isInteger(e.code)).toBe(true);
              expect(typeof e.message).toBe('string');
            }
          }
          if (res.statusCode >= 400) expect(messages[0]).toHaveProperty('error');
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    // The invariant: per (method, tool), the upstream never received more requests than were allowed.
    const got = new Map<string, number>();
    for (const r of received) {
      if (typeof r.id === 'string' && /^gitgate-(init|discover)-\d+$/.test(r.id)) continue; // the gateway's own handshake and discovery
      // Same rules as the policy input: the tool of tools/call, the prompt of prompts/get, the uri of resources/*.
      const p = r.params ?? {};
      const subject =
        r.method === 'tools/call' || r.method === 'prompts/get'
          ? p.name
          : r.method.startsWith('resources/')
            ? p.uri
            : undefined;
      const k = key(r.method, subject);
      got.set(k, (got.get(k) ?? 0) + 1);
    }
    for (const [k, n] of got) expect({ k, n: Math.min(n, allowed.get(k) ?? 0) }).toEqual({ k, n });
    console.log(`fuzz: ${RUNS} runs, the upstream received ${received.length} requests`);
    // The run must exercise forwarding at all (a near-valid third of the traffic, of which some is allowed).
    expect(received.length).toBeGreaterThan(RUNS / 20);
  }, 240_000);
});
