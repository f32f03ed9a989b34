/**
 * The request path of gitgate, one function per step (see docs/architecture.md):
 *
 *   resolve upstream → check origin → authenticate → read message → bind session
 *   → build policy input → decide → enforce → rate limit → mint credential
 *   → [park until approved] → forward → shape (filter lists, mask) → relay
 *
 * Each step lives in the folder named after its capability. Nothing reaches an
 * upstream unless `decide` returned a valid allow for exactly this message.
 */
import { park } from './approvals/park.js';
import type { ApprovalService } from './approvals/service.js';
import type { Auditor } from './audit/auditor.js';
import type { Clock } from './clock.js';
import type { GatewayConfig } from './config/types.js';
import type { Credentials } from './credentials/credentials.js';
import { GatewayError, toGatewayError } from './errors.js';
import type { Exchange } from './exchange.js';
import { checkOrigin } from './http/origin.js';
import { authenticate } from './identity/authenticate.js';
import type { Identity } from './identity/identity.js';
import type { TokenVerifier } from './identity/verifier.js';
import { maskedCopy, maskMessage } from './masking/mask.js';
import { maskText, type SentSecrets, scrubMessage, sentSecrets } from './masking/scrub.js';
import { fitStructuredContent } from './masking/structured.js';
import { bindSession, type Route, refuseSharedState } from './mcp/bind-session.js';
import { admitClientMessage } from './mcp/client-message.js';
import { forward, relayToUpstream } from './mcp/forward.js';
import {
  isRequest,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from './mcp/jsonrpc.js';
import { checkParams } from './mcp/params.js';
import { type Headers, header, withoutEnvelope } from './mcp/protocol.js';
import { readMessage, requireAccept } from './mcp/read-message.js';
import type { ReplayStream } from './mcp/replay.js';
import type { GatewaySession, SessionStore } from './mcp/sessions.js';
import type { ToolCatalog, ToolCatalogs } from './mcp/tool-catalog.js';
import { answeredStatus } from './mcp/upstream/types.js';
import { resolveUpstream, type Upstream, type UpstreamRegistry } from './mcp/upstreams.js';
import type { GatewayMetrics } from './metrics/metrics.js';
import { type DecisionOutcome, decide, enforce, sameTerms } from './policy/decide.js';
import type { DecisionEngine } from './policy/engine.js';
import { filterList, isFilteredList, type ListItemQuestion } from './policy/filter-list.js';
import { buildMessageInput, buildPolicyInput, type InputContext, type PolicyInput } from './policy/input.js';
import type { Rates } from './policy/rate-limit.js';

export interface GatewayDeps {
  readonly config: GatewayConfig;
  readonly verifier: TokenVerifier;
  readonly policy: DecisionEngine;
  readonly upstreams: UpstreamRegistry;
  readonly sessions: SessionStore;
  readonly metrics: GatewayMetrics;
  readonly credentials: Credentials;
  readonly rates: Rates;
  readonly catalogs: ToolCatalogs;
  readonly audit: Auditor;
  readonly approvals: ApprovalService;
  /** How long a parked call is held before the client gets the approval link (0 = at once). */
  readonly approvalHoldMs: number;
  readonly loginOf: (identity: Identity) => string;
  /** The time of policy inputs. */
  readonly clock: Clock;
}

export interface McpHttpRequest {
  readonly upstream: string;
  readonly headers: Headers;
  readonly body?: Buffer;
  /** http(s)://host of this gateway as the client sees it. */
  readonly baseUrl: string;
  /** Aborted when the client goes away. */
  readonly signal: AbortSignal;
  /** Who was admitted before the body was read (a POST's steps 1–3, done once). */
  readonly admitted?: Admitted;
  /** This exchange: told each fact once as the pipeline learns it, it is what the route logs and counts and the audit records. */
  readonly exchange: Exchange;
}

export type McpReply =
  | {
      readonly kind: 'json';
      readonly headers: Record<string, string>;
      readonly body: JsonRpcMessage;
      /** A 2026-07-28 upstream's HTTP status for a JSON-RPC error (e.g. 400 for a missing client capability). */
      readonly status?: number;
    }
  | { readonly kind: 'accepted' }
  | {
      readonly kind: 'stream';
      readonly headers: Record<string, string>;
      readonly messages: AsyncIterable<JsonRpcMessage>;
      /** A session's stream: each event gets an id and is kept for a reconnect with Last-Event-ID. */
      readonly replay?: ReplayStream;
    }
  | { readonly kind: 'empty'; readonly status: number };

export function resourceMetadataUrl(baseUrl: string, upstream: string): string {
  return `${baseUrl}/.well-known/oauth-protected-resource/mcp/${encodeURIComponent(upstream)}`;
}

/** Steps 1–3, shared by POST, GET and DELETE (and a POST's admission before its body is read): which upstream, from where, who. */
export interface Admitted {
  readonly upstream: Upstream;
  readonly identity: Identity;
}

export async function admit(
  deps: GatewayDeps,
  req: Pick<McpHttpRequest, 'upstream' | 'headers' | 'baseUrl'>,
): Promise<Admitted> {
  const upstream = resolveUpstream(deps.upstreams, req.upstream);
  checkOrigin(deps.config, req.headers);
  const identity = await authenticate(
    deps.verifier,
    header(req.headers, 'authorization'),
    resourceMetadataUrl(req.baseUrl, req.upstream),
  );
  return { upstream, identity };
}

/** POST /mcp/<upstream>: one JSON-RPC message from the client. */
export async function handlePost(deps: GatewayDeps, req: McpHttpRequest): Promise<McpReply> {
  const ex = req.exchange;
  deps.audit.assertWritable();
  const { upstream, identity } = req.admitted ?? (await admit(deps, req));
  ex.caller(identity, upstream.config.name);
  const incoming = readMessage(req.headers, req.body);
  const route = bindSession(deps.sessions, upstream, identity, req.headers, incoming);
  if (route.kind === 'session') {
    const confirming = deps.sessions.confirm(route.session);
    if (confirming !== undefined) await confirming;
    ex.bind({ session: route.session });
  } else if (route.kind === 'stateless') ex.bind({ stateless: upstream.config.name });
  const msg = incoming.message;
  if (!isRequest(msg)) return relayClientMessage(deps, req, upstream, identity, route, incoming.protocol.era, msg);
  ex.received(msg.method, msg.id);
  refuseSharedState(route, msg);
  checkParams(msg);
  const catalog = deps.catalogs.get(catalogKey(route, identity, upstream));
  const context: InputContext = {
    ...inputContext(deps, upstream, route, incoming.protocol.era, ex.id),
    toolChanged: (name) => catalog.changed(name),
  };
  const input = buildPolicyInput(identity, msg, context);
  ex.asked(input);
  const outcome = decide(deps.policy, input, deps.metrics, deps.config.credentials.maxTtlSeconds);
  // The request as the decision's mask rules leave it, copied once: what the audit record holds and
  // reviewers of a parked call see (with neither, there is nothing to copy it for).
  const masked =
    deps.audit.enabled || outcome.decision.approval.required ? maskedCopy(msg, outcome.decision.maskRules) : undefined;
  const decision = ex.decided(outcome, masked);
  enforce(outcome);
  await limitRate(deps.rates, input, outcome);
  // What goes upstream is what was decided: a session-era request carries no 2026-07-28 envelope keys
  // (the policy input and an approval's binding leave them out; that upstream does not speak them).
  const sending =
    msg.method === LISTEN_METHOD
      ? narrowListen(deps, identity, msg, context, ex)
      : incoming.protocol.era === 'legacy'
        ? withoutEnvelope(msg)
        : msg;
  // A credential for exactly this call, minted when the call is sent (for a parked call: at release).
  // Every secret sent (static secret, credentials) is scrubbed from what comes back.
  const sent = sentSecrets(upstream.config);
  const mint = () =>
    sent.addAuth(
      deps.credentials.forCall(upstream.config, {
        subject: identity.sub,
        method: msg.method,
        ...(input.mcp.tool !== undefined ? { tool: input.mcp.tool } : {}),
        ...(input.mcp.arguments !== undefined ? { arguments: input.mcp.arguments } : {}),
        ...(input.mcp.uri !== undefined ? { uri: input.mcp.uri } : {}),
        ...(input.mcp.prompt !== undefined ? { prompt: input.mcp.prompt } : {}),
        ...(msg.method.startsWith('tasks/') && typeof msg.params?.taskId === 'string'
          ? { taskId: msg.params.taskId }
          : {}),
        ttlSeconds: outcome.decision.credential.ttl_seconds,
        scopes: outcome.decision.credential.scopes,
      }),
    );
  const sessionAuth = (purpose: string) =>
    deps.credentials.forCall(upstream.config, { subject: identity.sub, method: purpose });
  // While it is in flight, the caller may cancel this request (and only its own requests).
  const ended = route.kind === 'session' ? route.session.inFlight.begin(msg.id) : () => undefined;
  const toCaller = (m: JsonRpcMessage) => {
    const shaped = shape(deps, m, msg, input, outcome, catalog, sent);
    return shaped === undefined ? undefined : deliver(route, shaped);
  };
  try {
    // A listen has no end of its own: it ends when the token that opened it expires.
    const signal = msg.method === LISTEN_METHOD ? untilTokenExpires(deps, identity, req.signal) : req.signal;
    const send = (auth = mint()) =>
      forward(deps.sessions, upstream, identity, route, sending, {
        signal,
        auth,
        sessionAuth,
        maskText: (t) => maskText(t, outcome.decision.maskRules),
      });
    if (outcome.decision.approval.required) {
      // Durable before the approval request is opened; at release, durable with the approval's records (executed) before it goes.
      await decision.durable();
      const released = park(
        deps.approvals,
        identity,
        msg,
        masked ?? maskedCopy(msg, outcome.decision.maskRules),
        input,
        outcome,
        ex,
        {
          holdMs: deps.approvalHoldMs,
          signal: req.signal,
          loginOf: deps.loginOf,
          recheck: () => stillReleasable(deps, identity, input, outcome),
        },
        async () => {
          await decision.durable();
          return (await send()).messages;
        },
      );
      return resumable(
        await relay(msg, mapMessages(released, toCaller, ended), ex),
        route.kind === 'session' ? route.session : undefined,
      );
    }
    // Nothing reaches the upstream before its decision is durable (a denial above stays held, durable with its error).
    // The credential is signed while the disk works; it goes nowhere until the decision is durable.
    const durable = decision.durable();
    durable.catch(() => undefined);
    const auth = mint();
    await durable;
    const forwarded = await send(auth);
    if (forwarded.session !== undefined) ex.opened(forwarded.session, forwarded.session.protocolVersion);
    return resumable(
      await relay(msg, mapMessages(forwarded.messages, toCaller, ended), ex, forwarded.session?.id),
      route.kind === 'session' ? route.session : forwarded.session,
    );
  } catch (err) {
    ended();
    throw err;
  }
}

/**
 * Step, for a call held for approval, at its release: the caller's token has not expired meanwhile,
 * and the policy serving now decides the same input on the same terms (it may have been swapped
 * while the call waited). Otherwise the call does not go: the caller calls again, and the new call
 * is decided (and, if need be, approved) anew.
 */
function stillReleasable(deps: GatewayDeps, identity: Identity, input: PolicyInput, outcome: DecisionOutcome): void {
  if (identity.expiresAt !== undefined && deps.clock.now() >= identity.expiresAt)
    throw new GatewayError(
      'AUTH_INVALID',
      "The caller's token expired while the call was held for approval: call again with a fresh token",
    );
  const now = decide(deps.policy, input, deps.metrics, deps.config.credentials.maxTtlSeconds);
  enforce(now);
  if (!sameTerms(outcome.decision, now.decision)) {
    const { revision } = now;
    throw new GatewayError(
      'POLICY_DENIED',
      `Denied by policy: the policy changed while the call was held for approval, and asks other terms of it now (${now.decision.reasons.join('; ') || 'no reason given'}): call again to have it decided anew`,
      { data: { reasons: now.decision.reasons, policy_revision: revision.commit ?? revision.bundleDigest } },
    );
  }
}

/** A session's SSE answer carries event ids and is kept, bounded, for a reconnect with Last-Event-ID. */
function resumable(reply: McpReply, session: GatewaySession | undefined): McpReply {
  return reply.kind === 'stream' && session !== undefined ? { ...reply, replay: session.replay.stream('post') } : reply;
}

function inputContext(
  deps: GatewayDeps,
  upstream: Upstream,
  route: Route,
  era: 'legacy' | 'modern',
  requestId: string,
): InputContext {
  return {
    now: deps.clock.now(),
    upstream: { name: upstream.config.name, transport: upstream.connector.transport },
    protocolVersion: route.protocolVersion,
    era,
    requestId,
    ...(route.kind === 'session' ? { sessionId: route.session.id } : {}),
  };
}

/**
 * Step (client notifications and responses): checked against what is in
 * flight (mcp/client-message.ts), decided by the policy like a request, and
 * recorded, before anything reaches the upstream.
 */
async function relayClientMessage(
  deps: GatewayDeps,
  req: McpHttpRequest,
  upstream: Upstream,
  identity: Identity,
  route: Route,
  era: 'legacy' | 'modern',
  msg: JsonRpcNotification | JsonRpcResponse,
): Promise<McpReply> {
  const ex = req.exchange;
  ex.received(isResponse(msg) ? 'response' : msg.method);
  const message = admitClientMessage(route, msg, (id) => upstream.shared.hasInFlight(identity.sub, id));
  const input = buildMessageInput(identity, message, inputContext(deps, upstream, route, era, ex.id));
  ex.asked(input);
  const outcome = decide(deps.policy, input, deps.metrics, deps.config.credentials.maxTtlSeconds);
  const decision = ex.decided(outcome, maskedCopy(msg, outcome.decision.maskRules));
  enforce(outcome);
  await decision.durable();
  await relayToUpstream(
    upstream,
    identity,
    route,
    msg,
    deps.credentials.forCall(upstream.config, { subject: identity.sub, method: message.method }),
  );
  return { kind: 'accepted' };
}

/** Step: an upstream request the caller is shown becomes one it may answer (once). */
function deliver(route: Route, m: JsonRpcMessage): JsonRpcMessage {
  if (route.kind === 'session' && isRequest(m)) route.session.inFlight.shown(m);
  return m;
}

/** The GET stream's messages, each durably recorded before the caller receives it. */
async function* recordEach(
  messages: AsyncIterable<JsonRpcMessage>,
  exchange: Exchange,
): AsyncGenerator<JsonRpcMessage> {
  for await (const m of messages) {
    await exchange.delivered(m);
    yield m;
  }
}

async function* toAsyncIterable<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}

/** The first stream, then the second; the second is closed too when the caller stops early. */
async function* concatStreams<T>(first: AsyncIterable<T>, second: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* first;
    yield* second;
  } finally {
    await second.return(undefined);
  }
}

/** The messages until `signal` aborts (then it ends, as if the stream had). */
async function* untilAborted<T>(items: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = items[Symbol.asyncIterator]();
  const aborted = new Promise<undefined>((resolve) => {
    if (signal.aborted) resolve(undefined);
    else signal.addEventListener('abort', () => resolve(undefined), { once: true });
  });
  try {
    for (;;) {
      const r = await Promise.race([it.next(), aborted]);
      if (r === undefined || r.done) return;
      yield r.value;
    }
  } finally {
    void it.return?.();
  }
}

function catalogKey(route: Route, identity: Identity, upstream: Upstream): string {
  return route.kind === 'session'
    ? `session:${route.session.id}`
    : `caller:${identity.sub}\u0000${upstream.config.name}`;
}

/** Step: the decision's rate, per caller, upstream, method and tool. */
async function limitRate(rates: Rates, input: PolicyInput, outcome: DecisionOutcome): Promise<void> {
  const rate = outcome.decision.rate;
  // No rate, no round trip (shared rates ask the store only for a decision that carries one).
  if (rate === undefined) return;
  await rates.take(
    `${input.identity.sub}\u0000${input.upstream.name}\u0000${input.mcp.method}\u0000${input.mcp.tool ?? ''}`,
    rate,
  );
}

/**
 * Step: what the caller may see of one upstream message for this request:
 * the secrets gitgate sent on this call scrubbed, list results filtered by asking
 * the policy about each item, then the decision's mask rules, then structured
 * content refitted to its schema.
 */
function shape(
  deps: GatewayDeps,
  m: JsonRpcMessage,
  request: JsonRpcRequest,
  input: PolicyInput,
  outcome: DecisionOutcome,
  catalog: ToolCatalog,
  sent: SentSecrets,
): JsonRpcMessage | undefined {
  scrubMessage(m, sent);
  if (isResponse(m) && m.id === request.id && m.result !== undefined) {
    if (request.method === 'tools/list') catalog.observe((m.result as { tools?: unknown }).tools);
    if (isFilteredList(request.method)) {
      const hidden = filterList(request.method, m.result, (q) => mayUse(deps, input, q, catalog));
      if (hidden > 0) deps.metrics.listItemsHidden.inc({ upstream: input.upstream.name }, hidden);
    }
  }
  if (!mayBeTold(deps, m, input, catalog)) return undefined;
  if (
    maskFor(deps, m, input, outcome) > 0 &&
    request.method === 'tools/call' &&
    isResponse(m) &&
    m.result !== undefined &&
    input.mcp.tool !== undefined
  ) {
    fitStructuredContent(m.result as Record<string, unknown>, catalog.outputSchema(input.mcp.tool));
  }
  return m;
}

/** Whether the caller may use what a list item or notification names: the policy is asked as if the caller requested it. */
function mayUse(deps: GatewayDeps, input: PolicyInput, q: ListItemQuestion, catalog: ToolCatalog | undefined): boolean {
  const changed = q.key === 'tool' && catalog !== undefined ? { tool_changed: catalog.changed(q.value) } : {};
  const item: PolicyInput = {
    ...input,
    mcp: { ...input.mcp, kind: 'request', method: q.method, [q.key]: q.value, listing: true, ...changed },
  };
  const d = decide(deps.policy, item, deps.metrics, deps.config.credentials.maxTtlSeconds).decision;
  return d.valid && d.allow;
}

/** A `notifications/resources/updated` names a resource: only a caller who may read it hears of it. */
function mayBeTold(
  deps: GatewayDeps,
  m: JsonRpcMessage,
  input: PolicyInput,
  catalog: ToolCatalog | undefined,
): boolean {
  if (!('method' in m) || m.method !== 'notifications/resources/updated' || 'id' in m) return true;
  const uri = m.params?.uri;
  if (typeof uri !== 'string') return false;
  const ok = mayUse(deps, input, { method: 'resources/read', key: 'uri', value: uri }, catalog);
  if (!ok) deps.metrics.listItemsHidden.inc({ upstream: input.upstream.name });
  return ok;
}

/** Step: the decision's mask rules over one message the caller will see (in place); how many values they changed. */
function maskFor(deps: GatewayDeps, m: JsonRpcMessage, input: PolicyInput, outcome: DecisionOutcome): number {
  if (outcome.decision.maskRules.length === 0) return 0;
  const report = maskMessage(m, outcome.decision.maskRules);
  for (const [detector, n] of Object.entries(report.found))
    deps.metrics.masked.inc({ upstream: input.upstream.name, detector }, n);
  return report.changed;
}

/**
 * Each message as the caller may see it; a message the caller may not see is dropped. `done` (if
 * given) runs once the messages end, however they end (answered, failed, or the caller gone).
 */
async function* mapMessages(
  messages: AsyncIterable<JsonRpcMessage>,
  f: (m: JsonRpcMessage) => JsonRpcMessage | undefined,
  done?: () => void,
): AsyncGenerator<JsonRpcMessage> {
  try {
    for await (const m of messages) {
      const out = f(m);
      if (out !== undefined) yield out;
    }
  } finally {
    done?.();
  }
}

/**
 * Step: answer with JSON when the upstream's first message is the response,
 * else stream everything as SSE (progress, sampling and elicitation requests
 * included) until the response. The answer is durably audited before the
 * client receives it.
 */
export async function relay(
  msg: JsonRpcRequest,
  messages: AsyncIterable<JsonRpcMessage>,
  exchange: Exchange,
  sessionId?: string,
): Promise<McpReply> {
  const headers: Record<string, string> = sessionId !== undefined ? { 'mcp-session-id': sessionId } : {};
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done)
    throw new GatewayError('UPSTREAM_PROTOCOL', `upstream closed without answering request ${String(msg.id)}`);
  if (isResponse(first.value) && first.value.id === msg.id) {
    void it.return?.();
    await exchange.answered(first.value, 0);
    const status = first.value.error !== undefined ? answeredStatus.get(first.value) : undefined;
    return { kind: 'json', headers, body: first.value, ...(status !== undefined ? { status } : {}) };
  }
  async function* rest(): AsyncGenerator<JsonRpcMessage> {
    let relayed = 0;
    try {
      // Every message the caller receives is durably recorded first, as it receives it.
      await exchange.delivered(first.value);
      yield first.value;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        if (isResponse(r.value) && r.value.id === msg.id) {
          await exchange.answered(r.value, relayed + 1);
          yield r.value;
          return;
        }
        relayed++;
        await exchange.delivered(r.value);
        yield r.value;
      }
      // A 2026-07-28 subscription ends without an answer when the upstream ends it.
      if (msg.method === LISTEN_METHOD) return;
      // Every request gets an answer: a stream that ends without one ends with an error.
      throw new GatewayError(
        'UPSTREAM_PROTOCOL',
        `upstream closed the stream without answering request ${String(msg.id)}`,
      );
    } catch (err) {
      const ge = toGatewayError(err);
      await exchange.failed(ge, msg.id);
      throw ge;
    }
  }
  return { kind: 'stream', headers, messages: rest() };
}

/**
 * GET /mcp/<upstream>: the session's stream of server messages not tied to a
 * request. Opening it is decided as `subscriptions/listen` (the 2026 name of
 * the same thing), and every message on it is shaped by that decision's mask
 * rules and recorded, exactly as the messages of a POST stream are.
 */
export async function handleGet(deps: GatewayDeps, req: McpHttpRequest): Promise<McpReply> {
  const ex = req.exchange;
  deps.audit.assertWritable();
  const { upstream, identity } = await admit(deps, req);
  // The caller once authenticated, as for POST and DELETE: a GET refused before its session is found names them too.
  ex.caller(identity, upstream.config.name);
  ex.received(LISTEN_METHOD);
  if (header(req.headers, 'mcp-protocol-version') === '2026-07-28') {
    throw new GatewayError('METHOD_NOT_ALLOWED', 'Method Not Allowed: protocol 2026-07-28 has no GET stream');
  }
  requireAccept(req.headers, 'text/event-stream');
  const session = deps.sessions.get(requireSessionId(req.headers), upstream.config.name, identity.sub);
  const confirming = deps.sessions.confirm(session);
  if (confirming !== undefined) await confirming;
  ex.bind({ session });
  const route: Route = { kind: 'session', session, protocolVersion: session.protocolVersion };
  const input = buildMessageInput(
    identity,
    { kind: 'request', method: LISTEN_METHOD },
    inputContext(deps, upstream, route, 'legacy', ex.id),
  );
  ex.asked(input);
  const outcome = decide(deps.policy, input, deps.metrics, deps.config.credentials.maxTtlSeconds);
  const decision = ex.decided(outcome, undefined);
  enforce(outcome);
  await decision.durable();
  // A reconnect with Last-Event-ID: what this session kept of that stream after it (already shaped
  // when it was first sent), then — for a GET stream — the stream goes on; a POST stream's replay ends there.
  const lastEventId = header(req.headers, 'last-event-id');
  const missed = lastEventId === undefined ? undefined : session.replay.after(lastEventId);
  const replayed = missed === undefined ? undefined : recordEach(toAsyncIterable(missed.messages), ex);
  if (replayed !== undefined && missed?.kind === 'post')
    return { kind: 'stream', headers: {}, messages: replayed, replay: session.replay.stream('post') };
  const sent = sentSecrets(upstream.config);
  // One live GET stream per session, each an upstream GET held open without a timeout: a new one (a
  // reconnect, or one too many) ends the one before, so a caller's sessions hold at most one each.
  session.getStream?.abort();
  const own = new AbortController();
  session.getStream = own;
  // Authenticated once, as it opened: the stream does not outlive the token (the client reconnects with a fresh one).
  const ended = untilTokenExpires(deps, identity, AbortSignal.any([req.signal, own.signal]));
  ended.addEventListener('abort', () => own.abort(), { once: true });
  const stream = await session.upstreamSession.listen(ended, sent.addAuth(session.auth('listen')));
  if (stream === undefined)
    throw new GatewayError(
      'METHOD_NOT_ALLOWED',
      `Method Not Allowed: upstream ${upstream.config.name} offers no GET stream`,
    );
  const toCaller = (m: JsonRpcMessage) => {
    scrubMessage(m, sent);
    if (!mayBeTold(deps, m, input, undefined)) return undefined;
    maskFor(deps, m, input, outcome);
    return deliver(route, m);
  };
  const live = recordEach(untilAborted(mapMessages(stream, toCaller), own.signal), ex);
  const messages = replayed === undefined ? live : concatStreams(replayed, live);
  return { kind: 'stream', headers: {}, messages, replay: session.replay.stream('get') };
}

/**
 * Step, for a 2026-07-28 `subscriptions/listen`: each resource it would subscribe to is decided as the
 * `resources/subscribe` of that uri would be, and only those the policy allows outright are asked of
 * the upstream (the listen itself is allowed to anyone who may hear list changes). How many were
 * left out goes with the exchange's record.
 */
function narrowListen(
  deps: GatewayDeps,
  identity: Identity,
  msg: JsonRpcRequest,
  context: InputContext,
  ex: Exchange,
): JsonRpcRequest {
  const notifications = msg.params?.notifications as Record<string, unknown> | undefined;
  const subs = notifications?.resourceSubscriptions;
  if (!Array.isArray(subs) || subs.length === 0) return msg;
  const allowed = subs.filter((uri) => {
    if (typeof uri !== 'string') return false;
    const asked = { jsonrpc: '2.0' as const, id: msg.id, method: 'resources/subscribe', params: { uri } };
    const d = decide(
      deps.policy,
      buildPolicyInput(identity, asked, context),
      deps.metrics,
      deps.config.credentials.maxTtlSeconds,
    ).decision;
    return d.allow && !d.approval.required;
  });
  if (allowed.length === subs.length) return msg;
  ex.link({ resource_subscriptions_refused: subs.length - allowed.length });
  return { ...msg, params: { ...msg.params, notifications: { ...notifications, resourceSubscriptions: allowed } } };
}

/** `signal`, and aborted too when the caller's token expires (on the gateway's clock). */
function untilTokenExpires(deps: GatewayDeps, identity: Identity, signal: AbortSignal): AbortSignal {
  if (identity.expiresAt === undefined) return signal;
  const expired = new AbortController();
  const timer = deps.clock.after(Math.max(0, identity.expiresAt - deps.clock.now()), () =>
    expired.abort(new GatewayError('AUTH_INVALID', "The caller's token expired")),
  );
  const both = AbortSignal.any([signal, expired.signal]);
  both.addEventListener('abort', () => timer.cancel(), { once: true });
  return both;
}

/** A legacy GET stream is decided as what it is in 2026-07-28: listening for the server's messages. */
export const LISTEN_METHOD = 'subscriptions/listen';

/** DELETE /mcp/<upstream>: end the caller's session. */
export async function handleDelete(deps: GatewayDeps, req: McpHttpRequest): Promise<McpReply> {
  const { upstream, identity } = await admit(deps, req);
  req.exchange.caller(identity, upstream.config.name);
  const id = requireSessionId(req.headers);
  deps.sessions.get(id, upstream.config.name, identity.sub);
  await deps.sessions.delete(id, 'closed by the client (DELETE)', { client: true });
  return { kind: 'empty', status: 204 };
}

function requireSessionId(headers: Headers): string {
  const id = header(headers, 'mcp-session-id');
  if (id === undefined) throw new GatewayError('SESSION_REQUIRED', 'Bad Request: Mcp-Session-Id header is required');
  return id;
}
