import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../src/approvals/service.js';
import { disabledAuditor } from '../../src/audit/auditor.js';
import { validateConfig } from '../../src/config/load.js';
import { Credentials } from '../../src/credentials/credentials.js';
import { KeyRing } from '../../src/credentials/keyring.js';
import { GatewayError } from '../../src/errors.js';
import { Exchange, type RecordedDecision } from '../../src/exchange.js';
import type { Identity } from '../../src/identity/identity.js';
import type { TokenVerifier } from '../../src/identity/verifier.js';
import type { JsonRpcMessage, JsonRpcRequest, JsonRpcResponse } from '../../src/mcp/jsonrpc.js';
import { SessionStore } from '../../src/mcp/sessions.js';
import { ToolCatalogs } from '../../src/mcp/tool-catalog.js';
import { createUpstreamRegistry } from '../../src/mcp/upstreams.js';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import {
  type GatewayDeps,
  handleDelete,
  handleGet,
  handlePost,
  type McpHttpRequest,
  type McpReply,
} from '../../src/pipeline.js';
import type { DecisionOutcome } from '../../src/policy/decide.js';
import { normalizeDecision } from '../../src/policy/decision.js';
import type { DecisionEngine, PolicyInstance } from '../../src/policy/engine.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { RateLimiter } from '../../src/policy/rate-limit.js';
import { FakeProvider, MemoryStore } from '../helpers/approval-fakes.js';
import { ManualClock } from '../helpers/clock.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';

/**
 * The request path with every dependency in memory: a verifier that knows two
 * tokens, a policy that is a function (its answer validated as a real one is),
 * the in-memory MCP upstream, an approval provider that is a map, a recording
 * audit, and a manual clock. What only a real process shows (HTTP, OPA, git,
 * SDK clients) is the integration tests' part.
 */
const PEOPLE: Record<string, Identity> = {
  alice: { sub: 'alice', groups: ['eng'], issuer: 'urn:test', githubLogin: 'alice-gh' },
  bob: { sub: 'bob', groups: [], issuer: 'urn:test' },
};

type Rule = (input: PolicyInput) => Record<string, unknown>;

const allow = (extra: Record<string, unknown> = {}) => ({ allow: true, reasons: ['ok'], ...extra });
const DEFAULT_RULE: Rule = (input) =>
  input.identity.groups.includes('eng') ? allow() : { allow: false, reasons: [`${input.identity.sub} is not in eng`] };

function world(opts: { rule?: Rule; holdMs?: number } = {}) {
  const clock = new ManualClock();
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-pipeline-'));
  const config = validateConfig(
    { dataDir: dir, identity: { mode: 'dev' }, policy: { dir }, upstreams: { u: { url: 'http://127.0.0.1:9/mcp' } } },
    {},
    dir,
    'test',
  );
  const verifier: TokenVerifier = {
    issuer: 'urn:test',
    verify: async (token) => {
      const who = PEOPLE[token];
      if (who === undefined) throw new GatewayError('AUTH_INVALID', 'unknown token');
      return who;
    },
  };
  let rule = opts.rule ?? DEFAULT_RULE;
  const inputs: PolicyInput[] = [];
  const instance: PolicyInstance = {
    revision: { source: 'memory', bundleDigest: 'sha256:00', loadedAt: new Date(clock.now()).toISOString() },
    evaluate: (input) => {
      inputs.push(input);
      return normalizeDecision(rule(input));
    },
    evaluateJson: (bytes) => instance.evaluate(JSON.parse(new TextDecoder().decode(bytes)) as PolicyInput),
  };
  let serving: PolicyInstance | undefined = instance;
  const policy: DecisionEngine = { current: () => serving };
  const received: JsonRpcRequest[] = [];
  const upstreams = createUpstreamRegistry(
    config,
    { debug: () => undefined, warn: () => undefined },
    {
      name: 'gitgate',
      version: 'test',
    },
    (cfg) => fakeUpstream(cfg, received),
  );
  const sessions = new SessionStore(() => ({ maxSessions: 10, maxSessionsPerCaller: 5, idleTimeoutMs: 60_000 }));
  const provider = new FakeProvider();
  const approvals = new ApprovalService(
    new MemoryStore(),
    provider,
    { record: () => undefined, log: () => undefined },
    { pollMs: 60_000, clock },
  );
  return {
    clock,
    received,
    inputs,
    provider,
    approvals,
    setRule: (r: Rule) => {
      rule = r;
    },
    unloadPolicy: () => {
      serving = undefined;
    },
    async deps(): Promise<GatewayDeps> {
      const keys = await KeyRing.load(dir, { graceMs: 0, activationMs: 0, clock });
      return {
        config,
        verifier,
        policy,
        upstreams,
        sessions,
        metrics: new GatewayMetrics(),
        credentials: new Credentials(config, keys),
        rates: new RateLimiter(clock),
        catalogs: new ToolCatalogs(),
        audit: disabledAuditor,
        approvals,
        approvalHoldMs: opts.holdMs ?? 0,
        loginOf: (id) => id.githubLogin ?? id.sub,
        clock,
      };
    },
    async close() {
      approvals.stop();
      await upstreams.shutdown();
    },
  };
}

/** An exchange that remembers, in order, what it was told (and keeps the facts, as every exchange does). */
class RecordingExchange extends Exchange {
  readonly log: string[] = [];
  readonly decidedWith: unknown[] = [];
  override caller(identity: Identity, upstream: string): void {
    super.caller(identity, upstream);
    this.log.push(`caller ${identity.sub}`);
  }
  override bind(): void {
    this.log.push('bind');
  }
  override decided(outcome: DecisionOutcome, masked: JsonRpcMessage | undefined): RecordedDecision {
    super.decided(outcome, masked);
    this.decidedWith.push(masked);
    this.log.push(`decided ${outcome.decision.allow ? 'allow' : 'deny'}`);
    return { durable: async () => void this.log.push('durable') };
  }
  override opened(s: { id: string }): void {
    this.log.push(`opened ${s.id}`);
  }
  override link(f: Record<string, unknown>): void {
    this.log.push(`link ${Object.keys(f).join(',')}`);
  }
  override async delivered(): Promise<void> {
    this.log.push('delivered');
  }
  override async answered(r: JsonRpcResponse): Promise<void> {
    this.log.push(`answered ${String(r.id)}`);
  }
  override async failed(e: GatewayError): Promise<void> {
    this.log.push(`failed ${e.code}`);
  }
}

let n = 0;
function request(
  token: string | undefined,
  body: JsonRpcMessage | undefined,
  headers: Record<string, string> = {},
): McpHttpRequest & { exchange: RecordingExchange } {
  return {
    upstream: 'u',
    headers: {
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: Buffer.from(JSON.stringify(body)) } : {}),
    baseUrl: 'http://gateway.test',
    signal: new AbortController().signal,
    exchange: new RecordingExchange(`r-${++n}`),
  };
}

const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
} as const;

const call = (id: number, name: string, args: Record<string, unknown> = {}): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args },
});

async function json(reply: McpReply): Promise<JsonRpcMessage> {
  if (reply.kind === 'json') return reply.body;
  if (reply.kind !== 'stream') throw new Error(`no message in a ${reply.kind} reply`);
  let last: JsonRpcMessage | undefined;
  for await (const m of reply.messages) last = m;
  return last!;
}

async function refused(p: Promise<unknown>): Promise<GatewayError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GatewayError);
  return e as GatewayError;
}

/** initialize as `who`: the session id. */
async function open(deps: GatewayDeps, who = 'alice'): Promise<string> {
  const reply = await handlePost(deps, request(who, INIT));
  if (reply.kind !== 'json') throw new Error('initialize did not answer with JSON');
  return reply.headers['mcp-session-id']!;
}

describe('pipeline (every dependency in memory)', () => {
  const worlds: ReturnType<typeof world>[] = [];
  const make = (opts: Parameters<typeof world>[0] = {}) => {
    const w = world(opts);
    worlds.push(w);
    return w;
  };
  afterEach(async () => {
    for (const w of worlds.splice(0)) await w.close();
  });

  it('handlePost: an allowed call reaches the upstream only after its decision is durable; the answer is recorded', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    const req = request('alice', call(1, 'echo', { message: 'hi' }), { 'mcp-session-id': session });
    const reply = await handlePost(deps, req);
    expect(await json(reply)).toMatchObject({ id: 1, result: { content: [{ text: 'called echo' }] } });
    expect(w.received.map((m) => m.method)).toEqual(['initialize', 'tools/call']);
    expect(req.exchange.log).toEqual(['caller alice', 'bind', 'decided allow', 'durable', 'answered 1']);
    // The policy saw who, what, and when (the gateway's clock).
    expect(w.inputs.at(-1)).toMatchObject({
      identity: { sub: 'alice', groups: ['eng'] },
      mcp: { method: 'tools/call', tool: 'echo', arguments: { message: 'hi' } },
      upstream: { name: 'u' },
      request: { time_ns: w.clock.now() * 1_000_000 },
    });
  });

  it('handlePost: a denial never reaches the upstream and carries the policy reason', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    w.setRule((input) => (input.mcp.tool === 'rm' ? { allow: false, reasons: ['rm is never allowed'] } : allow()));
    const req = request('alice', call(2, 'rm'), { 'mcp-session-id': session });
    const err = await refused(handlePost(deps, req));
    expect(err.code).toBe('POLICY_DENIED');
    expect(err.message).toMatch(/rm is never allowed/);
    expect(w.received.filter((m) => m.method === 'tools/call')).toEqual([]);
    expect(req.exchange.log).toContain('decided deny');
    expect(req.exchange.log).not.toContain('durable');
  });

  it('handlePost: fails closed without a token, with an unknown one, with no policy, or with an invalid decision', async () => {
    const w = make();
    const deps = await w.deps();
    expect((await refused(handlePost(deps, request(undefined, INIT)))).code).toBe('AUTH_REQUIRED');
    expect((await refused(handlePost(deps, request('mallory', INIT)))).code).toBe('AUTH_INVALID');
    w.setRule(() => ({ allow: 'yes' }));
    expect((await refused(handlePost(deps, request('alice', INIT)))).code).toBe('DECISION_INVALID');
    w.unloadPolicy();
    expect((await refused(handlePost(deps, request('alice', INIT)))).code).toBe('POLICY_UNAVAILABLE');
    expect(w.received).toEqual([]);
  });

  it('handlePost: the decision rate-limits on the clock', async () => {
    const w = make({ rule: () => allow({ rate: { calls: 2, window_seconds: 60 } }) });
    const deps = await w.deps();
    const session = await open(deps);
    const post = (id: number) => handlePost(deps, request('alice', call(id, 'echo'), { 'mcp-session-id': session }));
    // Per caller, upstream, method and tool: initialize took none of echo's.
    await json(await post(1));
    await json(await post(2));
    const err = await refused(post(3));
    expect(err).toMatchObject({ code: 'RATE_LIMITED', headers: { 'retry-after': '30' } });
    w.clock.advance(30_000);
    await json(await post(4));
    expect((await refused(post(5))).code).toBe('RATE_LIMITED');
    expect(w.received.filter((m) => m.method === 'tools/call')).toHaveLength(3);
  });

  it('handlePost: a call that needs approval is parked, then released by the identical retry once approved', async () => {
    const w = make({
      rule: (input) =>
        input.mcp.tool === 'deploy'
          ? allow({ risk: 'high', approval: { required: true, approvers: ['@acme/security'], min_approvals: 1 } })
          : allow(),
    });
    const deps = await w.deps();
    const session = await open(deps);
    const post = () =>
      handlePost(deps, request('alice', call(5, 'deploy', { env: 'prod' }), { 'mcp-session-id': session }));
    const parked = await refused(post().then(json));
    expect(parked.code).toBe('APPROVAL_REQUIRED');
    const { approval_id: id, url } = parked.data as { approval_id: string; url: string };
    expect(url).toBe('https://github.test/pull/1');
    expect(w.received.filter((m) => m.method === 'tools/call')).toEqual([]);
    // Reviewers saw the call as the decision leaves it.
    expect(w.provider.opened[0]?.call).toMatchObject({ tool: 'deploy', arguments: { env: 'prod' } });
    w.provider.approve('pr-1', 'sam');
    await w.approvals.refresh('pr-1');
    expect(await json(await post())).toMatchObject({ id: 5, result: { content: [{ text: 'called deploy' }] } });
    expect(w.approvals.get(id)?.status).toBe('executed');
    expect(w.received.filter((m) => m.method === 'tools/call')).toHaveLength(1);
  });

  it('handlePost: a parked call shows reviewers the arguments as the mask rules leave them', async () => {
    const w = make({
      rule: (input) =>
        input.mcp.tool !== 'notify'
          ? allow()
          : allow({
              approval: { required: true, approvers: ['sam'], min_approvals: 1 },
              mask: [{ path: '$.params.arguments.note', detectors: ['email'] }],
            }),
    });
    const deps = await w.deps();
    const session = await open(deps);
    const req = request('alice', call(6, 'notify', { note: 'mail carol@example.com' }), { 'mcp-session-id': session });
    expect((await refused(handlePost(deps, req).then(json))).code).toBe('APPROVAL_REQUIRED');
    expect(JSON.stringify(w.provider.opened[0]?.call)).not.toContain('carol@example.com');
    expect(w.provider.opened[0]?.call.arguments).toEqual({ note: 'mail [redacted:email]' });
    // The audit is given the same masked copy (it records it as given, masking nothing again).
    expect(req.exchange.decidedWith).toHaveLength(1);
    expect(JSON.stringify(req.exchange.decidedWith[0])).not.toContain('carol@example.com');
    expect(req.exchange.decidedWith[0]).toMatchObject({ params: { arguments: { note: 'mail [redacted:email]' } } });
  });

  it('the exchange keeps each fact it was told once, for the route to log and count, with the audit disabled too', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    // The exchange of a disabled audit (and of a DELETE) records nothing and keeps the facts all the same.
    const req = { ...request('alice', call(7, 'echo'), { 'mcp-session-id': session }), exchange: new Exchange('x7') };
    await json(await handlePost(deps, req));
    const ex = req.exchange;
    expect(ex.identity?.sub).toBe('alice');
    expect(ex.upstream).toBe('u');
    expect([ex.method, ex.rpcId, ex.tool]).toEqual(['tools/call', 7, 'echo']);
    expect(ex.decision?.decision.allow).toBe(true);
    // What the policy was asked, under the exchange's id.
    expect(ex.input?.mcp).toMatchObject({ method: 'tools/call', tool: 'echo' });
    expect([ex.input?.request.id, w.inputs.at(-1)?.request.id]).toEqual(['x7', 'x7']);
    // A client notification: its method, no request id, decided like a request.
    const note = request(
      'alice',
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { 'mcp-session-id': session },
    );
    expect(await handlePost(deps, note)).toEqual({ kind: 'accepted' });
    expect([note.exchange.method, note.exchange.rpcId, note.exchange.tool]).toEqual([
      'notifications/initialized',
      undefined,
      undefined,
    ]);
    expect(note.exchange.decision?.decision.allow).toBe(true);
    expect(note.exchange.log).toEqual(['caller alice', 'bind', 'decided allow', 'durable']);
  });

  it('a denied call or one with no policy loaded: what was asked is known, and the decision when there was one', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    w.setRule(() => ({ allow: false, reasons: ['no'] }));
    const denied = request('alice', call(9, 'rm'), { 'mcp-session-id': session });
    expect((await refused(handlePost(deps, denied))).code).toBe('POLICY_DENIED');
    expect(denied.exchange.decision?.decision).toMatchObject({ allow: false, reasons: ['no'] });
    expect([denied.exchange.method, denied.exchange.rpcId, denied.exchange.tool]).toEqual(['tools/call', 9, 'rm']);
    w.unloadPolicy();
    const none = request('alice', call(8, 'echo'), { 'mcp-session-id': session });
    expect((await refused(handlePost(deps, none))).code).toBe('POLICY_UNAVAILABLE');
    expect([none.exchange.identity?.sub, none.exchange.method, none.exchange.tool]).toEqual([
      'alice',
      'tools/call',
      'echo',
    ]);
    expect(none.exchange.decision).toBeUndefined();
    expect(none.exchange.log).toEqual(['caller alice', 'bind']);
  });

  it('handleGet: decided as subscriptions/listen, refused without a session or by policy', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    const get = (token: string, headers: Record<string, string>) =>
      handleGet(deps, request(token, undefined, { accept: 'text/event-stream', ...headers }));
    const early = request('alice', undefined, { accept: 'text/event-stream' });
    expect((await refused(handleGet(deps, early))).code).toBe('SESSION_REQUIRED');
    // Counted as the stream it asked for; its caller is told once authenticated, as for POST (the refusal names them).
    expect([early.exchange.method, early.exchange.identity?.sub]).toEqual(['subscriptions/listen', 'alice']);
    expect(early.exchange.log).toEqual(['caller alice']);
    w.setRule((input) =>
      input.mcp.method === 'subscriptions/listen' ? { allow: false, reasons: ['no streams'] } : allow(),
    );
    const denied = request('alice', undefined, { accept: 'text/event-stream', 'mcp-session-id': session });
    expect((await refused(handleGet(deps, denied))).code).toBe('POLICY_DENIED');
    expect(denied.exchange.log).toEqual(['caller alice', 'bind', 'decided deny']);
    expect(denied.exchange.decision?.decision.reasons).toEqual(['no streams']);
    expect(w.inputs.at(-1)?.mcp).toMatchObject({ kind: 'request', method: 'subscriptions/listen' });
    w.setRule(() => allow());
    // The in-memory upstream offers no GET stream.
    expect((await refused(get('alice', { 'mcp-session-id': session }))).code).toBe('METHOD_NOT_ALLOWED');
  });

  it("handleDelete: ends the caller's own session, and nobody else's", async () => {
    const w = make({ rule: () => allow() });
    const deps = await w.deps();
    const session = await open(deps, 'alice');
    const del = (who: string, id?: string) =>
      handleDelete(deps, request(who, undefined, id !== undefined ? { 'mcp-session-id': id } : {}));
    expect((await refused(del('alice'))).code).toBe('SESSION_REQUIRED');
    const notHers = await refused(del('bob', session));
    expect(notHers.code).toMatch(/SESSION/);
    const mine = request('alice', undefined, { 'mcp-session-id': session });
    expect(await handleDelete(deps, mine)).toEqual({ kind: 'empty', status: 204 });
    expect(mine.exchange.identity?.sub).toBe('alice');
    expect((await refused(del('alice', session))).code).toMatch(/SESSION/);
  });
});
