import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../src/approvals/service.js';
import { disabledAuditor, type ExchangeAudit } from '../../src/audit/auditor.js';
import { validateConfig } from '../../src/config/load.js';
import { Credentials } from '../../src/credentials/credentials.js';
import { KeyRing } from '../../src/credentials/keyring.js';
import { GatewayError } from '../../src/errors.js';
import type { Identity } from '../../src/identity/identity.js';
import type { TokenVerifier } from '../../src/identity/verifier.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
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

/** An ExchangeAudit that remembers, in order, what it was told. */
function recordingAudit(): ExchangeAudit & { readonly log: string[]; readonly decidedWith: unknown[] } {
  const log: string[] = [];
  const decidedWith: unknown[] = [];
  return {
    log,
    decidedWith,
    bind: () => log.push('bind'),
    caller: (id) => log.push(`caller ${id.sub}`),
    decided: (_input, outcome, message) => {
      decidedWith.push(message);
      log.push(`decided ${outcome.decision.allow ? 'allow' : 'deny'}`);
      return { durable: async () => void log.push('durable') };
    },
    opened: (s) => log.push(`opened ${s.id}`),
    link: (f) => log.push(`link ${Object.keys(f).join(',')}`),
    delivered: async () => void log.push('delivered'),
    answered: async (r) => void log.push(`answered ${String(r.id)}`),
    failed: async (e) => void log.push(`failed ${e.code}`),
  };
}

let n = 0;
function request(
  token: string | undefined,
  body: JsonRpcMessage | undefined,
  headers: Record<string, string> = {},
): McpHttpRequest & { audit: ReturnType<typeof recordingAudit> } {
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
    requestId: `r-${++n}`,
    audit: recordingAudit(),
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
    expect(req.audit.log).toEqual(['caller alice', 'bind', 'decided allow', 'durable', 'answered 1']);
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
    expect(req.audit.log).toContain('decided deny');
    expect(req.audit.log).not.toContain('durable');
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
    expect(req.audit.decidedWith).toHaveLength(1);
    expect(JSON.stringify(req.audit.decidedWith[0])).not.toContain('carol@example.com');
    expect(req.audit.decidedWith[0]).toMatchObject({ params: { arguments: { note: 'mail [redacted:email]' } } });
  });

  it('handleGet: decided as subscriptions/listen, refused without a session or by policy', async () => {
    const w = make();
    const deps = await w.deps();
    const session = await open(deps);
    const get = (token: string, headers: Record<string, string>) =>
      handleGet(deps, request(token, undefined, { accept: 'text/event-stream', ...headers }));
    expect((await refused(get('alice', {}))).code).toBe('SESSION_REQUIRED');
    w.setRule((input) =>
      input.mcp.method === 'subscriptions/listen' ? { allow: false, reasons: ['no streams'] } : allow(),
    );
    expect((await refused(get('alice', { 'mcp-session-id': session }))).code).toBe('POLICY_DENIED');
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
    expect(await del('alice', session)).toEqual({ kind: 'empty', status: 204 });
    expect((await refused(del('alice', session))).code).toMatch(/SESSION/);
  });
});
