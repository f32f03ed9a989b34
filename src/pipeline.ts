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
import type { Auditor, ExchangeAudit } from './audit/auditor.js';
import type { GatewayConfig } from './config/types.js';
import type { Credentials } from './credentials/credentials.js';
import { GatewayError, toGatewayError } from './errors.js';
import { checkOrigin } from './http/origin.js';
import { authenticate } from './identity/authenticate.js';
import type { Identity } from './identity/identity.js';
import type { TokenVerifier } from './identity/verifier.js';
import { fitStructuredContent } from './masking/structured.js';
import { maskMessage } from './masking/mask.js';
import { maskText, scrubMessage, sentSecrets, type SentSecrets } from './masking/scrub.js';
import { bindSession, type Route } from './mcp/bind-session.js';
import { forward, relayToUpstream } from './mcp/forward.js';
import { isRequest, isResponse, type JsonRpcMessage, type JsonRpcRequest } from './mcp/jsonrpc.js';
import { header, type Headers } from './mcp/protocol.js';
import { readMessage, requireAccept } from './mcp/read-message.js';
import type { SessionStore } from './mcp/sessions.js';
import type { ToolCatalog, ToolCatalogs } from './mcp/tool-catalog.js';
import { resolveUpstream, type Upstream, type UpstreamRegistry } from './mcp/upstreams.js';
import type { GatewayMetrics } from './metrics/metrics.js';
import { decide, enforce, type DecisionOutcome } from './policy/decide.js';
import type { DecisionEngine } from './policy/engine.js';
import { filterList, isFilteredList } from './policy/filter-list.js';
import { buildPolicyInput, type PolicyInput } from './policy/input.js';
import type { RateLimiter } from './policy/rate-limit.js';

export interface GatewayDeps {
  readonly config: GatewayConfig;
  readonly verifier: TokenVerifier;
  readonly policy: DecisionEngine;
  readonly upstreams: UpstreamRegistry;
  readonly sessions: SessionStore;
  readonly metrics: GatewayMetrics;
  readonly credentials: Credentials;
  readonly rates: RateLimiter;
  readonly catalogs: ToolCatalogs;
  readonly audit: Auditor;
  readonly approvals: ApprovalService;
  /** How long a parked call is held before the client gets the approval link (0 = at once). */
  readonly approvalHoldMs: number;
  readonly loginOf: (identity: Identity) => string;
}

export interface McpHttpRequest {
  readonly upstream: string;
  readonly headers: Headers;
  readonly body?: Buffer;
  /** http(s)://host of this gateway as the client sees it. */
  readonly baseUrl: string;
  /** Aborted when the client goes away. */
  readonly signal: AbortSignal;
  /** gitgate's id for this HTTP exchange. */
  readonly requestId: string;
  /** Records this exchange. */
  readonly audit: ExchangeAudit;
}

export type McpReply =
  | { readonly kind: 'json'; readonly headers: Record<string, string>; readonly body: JsonRpcMessage }
  | { readonly kind: 'accepted' }
  | { readonly kind: 'stream'; readonly headers: Record<string, string>; readonly messages: AsyncIterable<JsonRpcMessage> }
  | { readonly kind: 'empty'; readonly status: number };

/** What the route logs and counts about one exchange. */
export interface ExchangeNote {
  identity?: Identity;
  method?: string;
  tool?: string;
  decision?: DecisionOutcome;
  rpcId?: string | number;
}

export function resourceMetadataUrl(baseUrl: string, upstream: string): string {
  return `${baseUrl}/.well-known/oauth-protected-resource/mcp/${encodeURIComponent(upstream)}`;
}

/** Steps 1–3, shared by POST, GET and DELETE: which upstream, from where, who. */
async function admit(deps: GatewayDeps, req: McpHttpRequest): Promise<{ upstream: Upstream; identity: Identity }> {
  const upstream = resolveUpstream(deps.upstreams, req.upstream);
  checkOrigin(deps.config, req.headers);
  const identity = await authenticate(deps.verifier, header(req.headers, 'authorization'), resourceMetadataUrl(req.baseUrl, req.upstream));
  return { upstream, identity };
}

/** POST /mcp/<upstream>: one JSON-RPC message from the client. */
export async function handlePost(deps: GatewayDeps, req: McpHttpRequest, note: ExchangeNote = {}): Promise<McpReply> {
  deps.audit.assertWritable();
  const { upstream, identity } = await admit(deps, req);
  note.identity = identity;
  req.audit.caller(identity, upstream.config.name);
  const incoming = readMessage(req.headers, req.body);
  const route = bindSession(deps.sessions, upstream, identity, req.headers, incoming);
  if (route.kind === 'session') req.audit.bind({ session: route.session });
  else if (route.kind === 'stateless') req.audit.bind({ stateless: upstream.config.name });
  const msg = incoming.message;
  note.method = 'method' in msg ? msg.method : 'response';
  if (!isRequest(msg)) {
    await relayToUpstream(upstream, identity, route, msg, deps.credentials.forCall(upstream.config, { subject: identity.sub, method: note.method }));
    return { kind: 'accepted' };
  }
  note.rpcId = msg.id;
  const catalog = deps.catalogs.get(catalogKey(route, identity, upstream));
  const input = buildPolicyInput(identity, msg, {
    upstream: { name: upstream.config.name, transport: upstream.connector.transport },
    protocolVersion: route.protocolVersion,
    era: incoming.protocol.era,
    requestId: req.requestId,
    ...(route.kind === 'session' ? { sessionId: route.session.id } : {}),
    toolChanged: (name) => catalog.changed(name),
  });
  if (input.mcp.tool !== undefined) note.tool = input.mcp.tool;
  const outcome = (note.decision = decide(deps.policy, input, deps.metrics, deps.config.credentials.maxTtlSeconds));
  req.audit.decided(input, outcome, msg);
  enforce(outcome);
  limitRate(deps.rates, input, outcome);
  // A credential for exactly this call, minted when the call is sent (for a parked call: at release).
  // Every secret sent (static secret, credentials) is scrubbed from what comes back.
  const sent = sentSecrets(upstream.config);
  const mint = () =>
    sent.addAuth(deps.credentials.forCall(upstream.config, {
      subject: identity.sub,
      method: msg.method,
      ...(input.mcp.tool !== undefined ? { tool: input.mcp.tool } : {}),
      ...(input.mcp.arguments !== undefined ? { arguments: input.mcp.arguments } : {}),
      ttlSeconds: outcome.decision.credential.ttl_seconds,
      scopes: outcome.decision.credential.scopes,
    }));
  const sessionAuth = (purpose: string) => deps.credentials.forCall(upstream.config, { subject: identity.sub, method: purpose });
  const send = () => forward(deps.sessions, upstream, identity, route, msg, { signal: req.signal, auth: mint(), sessionAuth, maskText: (t) => maskText(t, outcome.decision.maskRules) });
  if (outcome.decision.approval.required) {
    const released = park(deps.approvals, identity, msg, input, outcome, req.audit, { holdMs: deps.approvalHoldMs, signal: req.signal, loginOf: deps.loginOf }, async () => (await send()).messages);
    return relay(msg, mapMessages(released, (m) => shape(deps, m, msg, input, outcome, catalog, sent)), req.audit);
  }
  const forwarded = await send();
  if (forwarded.session !== undefined) req.audit.opened(forwarded.session, forwarded.session.protocolVersion);
  const shaped = mapMessages(forwarded.messages, (m) => shape(deps, m, msg, input, outcome, catalog, sent));
  return relay(msg, shaped, req.audit, forwarded.session?.id);
}

function catalogKey(route: Route, identity: Identity, upstream: Upstream): string {
  return route.kind === 'session' ? `session:${route.session.id}` : `caller:${identity.sub}\u0000${upstream.config.name}`;
}

/** Step: the decision's rate, per caller, upstream, method and tool. */
function limitRate(rates: RateLimiter, input: PolicyInput, outcome: DecisionOutcome): void {
  const rate = outcome.decision.rate;
  if (rate === undefined) return;
  rates.take(`${input.identity.sub}\u0000${input.upstream.name}\u0000${input.mcp.method}\u0000${input.mcp.tool ?? ''}`, rate);
}

/**
 * Step: what the caller may see of one upstream message for this request:
 * the secrets gitgate sent on this call scrubbed, list results filtered by asking
 * the policy about each item, then the decision's mask rules, then structured
 * content refitted to its schema.
 */
function shape(deps: GatewayDeps, m: JsonRpcMessage, request: JsonRpcRequest, input: PolicyInput, outcome: DecisionOutcome, catalog: ToolCatalog, sent: SentSecrets): JsonRpcMessage {
  const upstream = input.upstream.name;
  scrubMessage(m, sent);
  if (isResponse(m) && m.id === request.id && m.result !== undefined) {
    if (request.method === 'tools/list') catalog.observe((m.result as { tools?: unknown }).tools);
    if (isFilteredList(request.method)) {
      const hidden = filterList(request.method, m.result, (q) => {
        const item: PolicyInput = { ...input, mcp: { ...input.mcp, method: q.method, [q.key]: q.value, listing: true, ...(q.key === 'tool' ? { tool_changed: catalog.changed(q.value) } : {}) } };
        const d = decide(deps.policy, item, deps.metrics, deps.config.credentials.maxTtlSeconds).decision;
        return d.valid && d.allow;
      });
      if (hidden > 0) deps.metrics.listItemsHidden.inc({ upstream }, hidden);
    }
  }
  if (outcome.decision.maskRules.length > 0) {
    const report = maskMessage(m, outcome.decision.maskRules);
    for (const [detector, n] of Object.entries(report.found)) deps.metrics.masked.inc({ upstream, detector }, n);
    if (report.changed > 0 && request.method === 'tools/call' && isResponse(m) && m.result !== undefined && input.mcp.tool !== undefined) {
      fitStructuredContent(m.result as Record<string, unknown>, catalog.outputSchema(input.mcp.tool));
    }
  }
  return m;
}

async function* mapMessages(messages: AsyncIterable<JsonRpcMessage>, f: (m: JsonRpcMessage) => JsonRpcMessage): AsyncGenerator<JsonRpcMessage> {
  for await (const m of messages) yield f(m);
}

/**
 * Step: answer with JSON when the upstream's first message is the response,
 * else stream everything as SSE (progress, sampling and elicitation requests
 * included) until the response. The answer is durably audited before the
 * client receives it.
 */
export async function relay(msg: JsonRpcRequest, messages: AsyncIterable<JsonRpcMessage>, audit: ExchangeAudit, sessionId?: string): Promise<McpReply> {
  const headers: Record<string, string> = sessionId !== undefined ? { 'mcp-session-id': sessionId } : {};
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) throw new GatewayError('UPSTREAM_PROTOCOL', `upstream closed without answering request ${String(msg.id)}`);
  if (isResponse(first.value) && first.value.id === msg.id) {
    void it.return?.();
    await audit.answered(first.value, 0);
    return { kind: 'json', headers, body: first.value };
  }
  async function* rest(): AsyncGenerator<JsonRpcMessage> {
    let relayed = 0;
    try {
      yield first.value;
      for (let r = await it.next(); !r.done; r = await it.next()) {
        if (isResponse(r.value) && r.value.id === msg.id) {
          await audit.answered(r.value, relayed + 1);
          yield r.value;
          return;
        }
        relayed++;
        yield r.value;
      }
      // Every request gets an answer: a stream that ends without one ends with an error.
      throw new GatewayError('UPSTREAM_PROTOCOL', `upstream closed the stream without answering request ${String(msg.id)}`);
    } catch (err) {
      const ge = toGatewayError(err);
      await audit.failed(ge, msg.id);
      throw ge;
    }
  }
  return { kind: 'stream', headers, messages: rest() };
}

/** GET /mcp/<upstream>: the session's stream of server messages not tied to a request. */
export async function handleGet(deps: GatewayDeps, req: McpHttpRequest, note: ExchangeNote = {}): Promise<McpReply> {
  const { upstream, identity } = await admit(deps, req);
  note.identity = identity;
  if (header(req.headers, 'mcp-protocol-version') === '2026-07-28') {
    throw new GatewayError('METHOD_NOT_ALLOWED', 'Method Not Allowed: protocol 2026-07-28 has no GET stream');
  }
  requireAccept(req.headers, 'text/event-stream');
  const session = deps.sessions.get(requireSessionId(req.headers), upstream.config.name, identity.sub);
  const stream = await session.upstreamSession.listen(req.signal, session.auth('listen'));
  if (stream === undefined) throw new GatewayError('METHOD_NOT_ALLOWED', `Method Not Allowed: upstream ${upstream.config.name} offers no GET stream`);
  return { kind: 'stream', headers: {}, messages: stream };
}

/** DELETE /mcp/<upstream>: end the caller's session. */
export async function handleDelete(deps: GatewayDeps, req: McpHttpRequest, note: ExchangeNote = {}): Promise<McpReply> {
  const { upstream, identity } = await admit(deps, req);
  note.identity = identity;
  const id = requireSessionId(req.headers);
  deps.sessions.get(id, upstream.config.name, identity.sub);
  await deps.sessions.delete(id, 'closed by the client (DELETE)');
  return { kind: 'empty', status: 204 };
}

function requireSessionId(headers: Headers): string {
  const id = header(headers, 'mcp-session-id');
  if (id === undefined) throw new GatewayError('SESSION_REQUIRED', 'Bad Request: Mcp-Session-Id header is required');
  return id;
}
