/**
 * The request path of gitgate, one function per step (see docs/architecture.md):
 *
 *   resolve upstream → check origin → authenticate → read message → bind session
 *   → build policy input → decide → enforce → forward → relay
 *
 * Each step lives in the folder named after its capability. Nothing reaches an
 * upstream unless `decide` returned a valid allow for exactly this message.
 */
import { GatewayError } from './errors.js';
import { authenticate } from './identity/authenticate.js';
import type { Identity } from './identity/identity.js';
import type { TokenVerifier } from './identity/verifier.js';
import { checkOrigin } from './http/origin.js';
import type { GatewayConfig } from './config/types.js';
import { bindSession } from './mcp/bind-session.js';
import { forward, relayToUpstream } from './mcp/forward.js';
import { isRequest, isResponse, type JsonRpcMessage, type JsonRpcRequest } from './mcp/jsonrpc.js';
import { header, type Headers } from './mcp/protocol.js';
import { readMessage, requireAccept } from './mcp/read-message.js';
import type { SessionStore } from './mcp/sessions.js';
import { resolveUpstream, type UpstreamRegistry } from './mcp/upstreams.js';
import type { GatewayMetrics } from './metrics/metrics.js';
import { decide, enforce, type DecisionOutcome } from './policy/decide.js';
import type { DecisionEngine } from './policy/engine.js';
import { buildPolicyInput } from './policy/input.js';

export interface GatewayDeps {
  readonly config: GatewayConfig;
  readonly verifier: TokenVerifier;
  readonly policy: DecisionEngine;
  readonly upstreams: UpstreamRegistry;
  readonly sessions: SessionStore;
  readonly metrics: GatewayMetrics;
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

/** POST /mcp/<upstream>: one JSON-RPC message from the client. */
export async function handlePost(deps: GatewayDeps, req: McpHttpRequest, note: ExchangeNote = {}): Promise<McpReply> {
  const upstream = resolveUpstream(deps.upstreams, req.upstream);
  checkOrigin(deps.config, req.headers);
  const identity = (note.identity = await authenticate(deps.verifier, header(req.headers, 'authorization'), resourceMetadataUrl(req.baseUrl, req.upstream)));
  const incoming = readMessage(req.headers, req.body);
  const route = bindSession(deps.sessions, upstream, identity, req.headers, incoming);
  const msg = incoming.message;
  note.method = 'method' in msg ? msg.method : 'response';
  if (isRequest(msg)) note.rpcId = msg.id;
  if (!isRequest(msg)) {
    await relayToUpstream(upstream, identity, route, msg);
    return { kind: 'accepted' };
  }
  const input = buildPolicyInput(identity, msg, {
    upstream: { name: upstream.config.name, transport: upstream.connector.transport },
    protocolVersion: route.protocolVersion,
    era: incoming.protocol.era,
    requestId: req.requestId,
    ...(route.kind === 'session' ? { sessionId: route.session.id } : {}),
  });
  if (input.mcp.tool !== undefined) note.tool = input.mcp.tool;
  const outcome = (note.decision = decide(deps.policy, input, deps.metrics));
  enforce(outcome);
  const forwarded = await forward(deps.sessions, upstream, identity, route, msg, req.signal);
  return relay(msg, forwarded.messages, forwarded.sessionId);
}

/**
 * Step: answer with JSON when the upstream's first message is the response,
 * else stream everything as SSE (progress, sampling and elicitation requests
 * included) until the response.
 */
export async function relay(msg: JsonRpcRequest, messages: AsyncIterable<JsonRpcMessage>, sessionId?: string): Promise<McpReply> {
  const headers: Record<string, string> = sessionId !== undefined ? { 'mcp-session-id': sessionId } : {};
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) throw new GatewayError('UPSTREAM_PROTOCOL', `upstream closed without answering request ${String(msg.id)}`);
  if (isResponse(first.value) && first.value.id === msg.id) {
    void it.return?.();
    return { kind: 'json', headers, body: first.value };
  }
  async function* rest(): AsyncGenerator<JsonRpcMessage> {
    yield first.value;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  return { kind: 'stream', headers, messages: rest() };
}

/** GET /mcp/<upstream>: the session's stream of server messages not tied to a request. */
export async function handleGet(deps: GatewayDeps, req: McpHttpRequest): Promise<McpReply> {
  const upstream = resolveUpstream(deps.upstreams, req.upstream);
  checkOrigin(deps.config, req.headers);
  const identity = await authenticate(deps.verifier, header(req.headers, 'authorization'), resourceMetadataUrl(req.baseUrl, req.upstream));
  if (header(req.headers, 'mcp-protocol-version') === '2026-07-28') {
    throw new GatewayError('METHOD_NOT_ALLOWED', 'Method Not Allowed: protocol 2026-07-28 has no GET stream');
  }
  requireAccept(req.headers, 'text/event-stream');
  const id = header(req.headers, 'mcp-session-id');
  if (id === undefined) throw new GatewayError('SESSION_REQUIRED', 'Bad Request: Mcp-Session-Id header is required');
  const session = deps.sessions.get(id, upstream.config.name, identity.sub);
  const stream = await session.upstreamSession.listen(req.signal);
  if (stream === undefined) throw new GatewayError('METHOD_NOT_ALLOWED', `Method Not Allowed: upstream ${upstream.config.name} offers no GET stream`);
  return { kind: 'stream', headers: {}, messages: stream };
}

/** DELETE /mcp/<upstream>: end the caller's session. */
export async function handleDelete(deps: GatewayDeps, req: McpHttpRequest): Promise<McpReply> {
  const upstream = resolveUpstream(deps.upstreams, req.upstream);
  checkOrigin(deps.config, req.headers);
  const identity = await authenticate(deps.verifier, header(req.headers, 'authorization'), resourceMetadataUrl(req.baseUrl, req.upstream));
  const id = header(req.headers, 'mcp-session-id');
  if (id === undefined) throw new GatewayError('SESSION_REQUIRED', 'Bad Request: Mcp-Session-Id header is required');
  deps.sessions.get(id, upstream.config.name, identity.sub);
  await deps.sessions.delete(id);
  return { kind: 'empty', status: 204 };
}
