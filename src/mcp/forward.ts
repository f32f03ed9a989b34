import { GatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { sentSecrets, upstreamDetail } from '../masking/scrub.js';
import type { Route } from './bind-session.js';
import {
  isResponse,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from './jsonrpc.js';
import { encodeHeaderValue, LEGACY_VERSIONS, MCP_NAME_SOURCE, MODERN_VERSION, toModernResult } from './protocol.js';
import type { GatewaySession, SessionStore } from './sessions.js';
import { answeredStatus, type UpstreamAuth } from './upstream/types.js';
import type { Upstream } from './upstreams.js';

export interface Forwarded {
  /** Server messages for this request, ending with its response. */
  readonly messages: AsyncIterable<JsonRpcMessage>;
  /** Set when `initialize` opened a new gateway session. */
  readonly session?: GatewaySession;
}

export interface ForwardOptions {
  readonly signal: AbortSignal;
  readonly auth: UpstreamAuth;
  readonly sessionAuth: (purpose: string) => UpstreamAuth;
  /** The decision's masking for upstream text that becomes an error message. */
  readonly maskText?: (text: string) => string;
}

/** Step: send an allowed request to the upstream over the route's session. */
export async function forward(
  sessions: SessionStore,
  upstream: Upstream,
  identity: Identity,
  route: Route,
  msg: JsonRpcRequest,
  opts: ForwardOptions,
): Promise<Forwarded> {
  switch (route.kind) {
    case 'session':
      return { messages: route.session.upstreamSession.request(msg, opts) };
    case 'stateless': {
      if (msg.method === LISTEN)
        return {
          messages: upstream.listens.hold(
            identity.sub,
            (await upstream.discovery.era()) === 'modern'
              ? forwardModern(upstream, msg, opts)
              : upstream.shared.listen(msg, opts.signal),
          ),
        };
      if ((await upstream.discovery.era()) === 'modern') return { messages: forwardModern(upstream, msg, opts) };
      if (msg.method === 'server/discover') return { messages: discover(upstream, msg) };
      return { messages: upstream.shared.request(msg, identity.sub, opts) };
    }
    case 'initialize':
      return initialize(sessions, upstream, identity, msg, opts);
  }
}

async function initialize(
  sessions: SessionStore,
  upstream: Upstream,
  identity: Identity,
  msg: JsonRpcRequest,
  opts: ForwardOptions,
): Promise<Forwarded> {
  // The slot is held from here until the session exists (or the initialize failed): the caps hold under concurrency.
  const slot = await sessions.reserve(upstream.config.name, identity.sub);
  try {
    const upstreamSession = await upstream.connector.open();
    const messages: JsonRpcMessage[] = [];
    let response: JsonRpcResponse | undefined;
    try {
      for await (const m of upstreamSession.request(msg, opts)) {
        messages.push(m);
        if (isResponse(m) && m.id === msg.id) response = m;
      }
    } catch (err) {
      await upstreamSession.close(opts.sessionAuth('session/close'));
      throw err;
    }
    const version = (response?.result as { protocolVersion?: unknown } | undefined)?.protocolVersion;
    if (response?.error !== undefined || typeof version !== 'string') {
      await upstreamSession.close(opts.sessionAuth('session/close'));
      return { messages: toAsync(messages) };
    }
    if (!LEGACY_VERSIONS.includes(version)) {
      await upstreamSession.close(opts.sessionAuth('session/close'));
      // The version is upstream bytes: scrubbed and cut before it names the refusal.
      const said = upstreamDetail(version, sentSecrets(upstream.config, opts.auth), 40, opts.maskText);
      throw new GatewayError(
        'UPSTREAM_PROTOCOL',
        `upstream ${upstream.config.name} negotiated protocol ${said}, which gitgate does not relay`,
      );
    }
    const session = sessions.create(
      upstream.config.name,
      identity.sub,
      version,
      upstreamSession,
      opts.sessionAuth,
      slot,
    );
    return { messages: toAsync(messages), session };
  } finally {
    slot.release();
  }
}

/**
 * A 2026-07-28 request to an upstream that speaks 2026-07-28: sent as itself, the exact message that
 * was decided (the caller's own `_meta`, envelope and capabilities included), with the headers the
 * revision requires (rebuilt by gitgate from that body, never copied from the caller). Its answer —
 * a result, an error, an input-required result — comes back as the upstream gave it; cacheable results
 * are marked private, since what gitgate answers depends on the caller.
 */
async function* forwardModern(
  upstream: Upstream,
  msg: JsonRpcRequest,
  opts: ForwardOptions,
): AsyncGenerator<JsonRpcMessage> {
  const session = await upstream.connector.open();
  const name = Object.hasOwn(MCP_NAME_SOURCE, msg.method) ? msg.params?.[MCP_NAME_SOURCE[msg.method]!] : undefined;
  const headers: Record<string, string> = {
    'mcp-protocol-version': MODERN_VERSION,
    'mcp-method': msg.method,
    ...(typeof name === 'string' ? { 'mcp-name': encodeHeaderValue(name) } : {}),
  };
  try {
    for await (const m of session.request(msg, { ...opts, headers, listen: msg.method === LISTEN })) {
      if (isResponse(m) && m.id === msg.id && m.result !== undefined) {
        const status = answeredStatus.get(m);
        const out = { ...m, result: toModernResult(msg.method, servedOnly(msg.method, m.result)) };
        if (status !== undefined) answeredStatus.set(out, status);
        yield out;
      } else yield m;
    }
  } finally {
    await session.close();
  }
}

const LISTEN = 'subscriptions/listen';

/** server/discover through gitgate lists only the revisions gitgate serves per request. */
function servedOnly(method: string, result: unknown): unknown {
  if (method !== 'server/discover' || result === null || typeof result !== 'object') return result;
  const r = result as Record<string, unknown>;
  return Array.isArray(r.supportedVersions)
    ? { ...r, supportedVersions: r.supportedVersions.filter((v) => v === MODERN_VERSION) }
    : r;
}

async function* discover(upstream: Upstream, msg: JsonRpcRequest): AsyncGenerator<JsonRpcMessage> {
  const { init } = await upstream.shared.ready();
  yield {
    jsonrpc: '2.0',
    id: msg.id,
    result: toModernResult(
      'server/discover',
      {
        supportedVersions: [MODERN_VERSION],
        capabilities: init.capabilities,
        ...(init.instructions !== undefined ? { instructions: init.instructions } : {}),
      },
      init.serverInfo,
    ),
  };
}

async function* toAsync<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}

/** Relay a client notification or response (e.g. a sampling result) to the upstream. */
export async function relayToUpstream(
  upstream: Upstream,
  identity: Identity,
  route: Route,
  msg: JsonRpcNotification | JsonRpcResponse,
  auth: UpstreamAuth,
): Promise<void> {
  if (route.kind === 'session') return route.session.upstreamSession.send(msg, auth);
  if (route.kind === 'stateless' && 'method' in msg)
    return upstream.shared.notify(identity.sub, msg.method, msg.params);
  // Responses have no stateless destination, and nothing precedes initialize.
}
