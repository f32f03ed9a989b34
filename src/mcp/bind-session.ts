import { GatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { isRequest, type JsonRpcRequest } from './jsonrpc.js';
import { type Headers, header, MODERN_REQUEST_METHODS, REMOVED_AT_MODERN } from './protocol.js';
import type { IncomingMessage } from './read-message.js';
import type { GatewaySession, SessionStore } from './sessions.js';
import type { Upstream } from './upstreams.js';

/** Where a message goes: an existing session, a session `initialize` will open, or the shared stateless session. */
export type Route =
  | { readonly kind: 'session'; readonly session: GatewaySession; readonly protocolVersion: string }
  | { readonly kind: 'initialize'; readonly protocolVersion: string }
  | { readonly kind: 'stateless'; readonly protocolVersion: string };

/** Step: bind the message to the caller's session (legacy) or to the stateless path (2026-07-28). */
export function bindSession(
  sessions: SessionStore,
  upstream: Upstream,
  identity: Identity,
  headers: Headers,
  incoming: IncomingMessage,
): Route {
  const { message, protocol } = incoming;
  if (protocol.era === 'modern') return { kind: 'stateless', protocolVersion: protocol.version! };
  if (isRequest(message) && message.method === 'initialize') {
    const v = message.params?.protocolVersion;
    return { kind: 'initialize', protocolVersion: typeof v === 'string' ? v : 'unknown' };
  }
  const id = header(headers, 'mcp-session-id');
  if (id === undefined)
    throw new GatewayError(
      'SESSION_REQUIRED',
      'Bad Request: Mcp-Session-Id header is required (send initialize first)',
    );
  const session = sessions.get(id, upstream.config.name, identity.sub);
  if (protocol.version !== undefined && protocol.version !== session.protocolVersion) {
    throw new GatewayError(
      'UNSUPPORTED_PROTOCOL_VERSION',
      `MCP-Protocol-Version ${protocol.version} does not match the version negotiated for this session (${session.protocolVersion})`,
    );
  }
  return { kind: 'session', session, protocolVersion: session.protocolVersion };
}

/**
 * Step: at 2026-07-28 the methods of the session era (`initialize`, `logging/setLevel`, …) do not
 * exist, and sent into the upstream session that stateless callers share they would change every
 * caller's state; a method no revision defines is not found either (-32601, HTTP 404). Neither is
 * decided or forwarded.
 */
export function refuseSharedState(route: Route, msg: JsonRpcRequest): void {
  if (route.kind !== 'stateless') return;
  if (REMOVED_AT_MODERN.has(msg.method))
    throw new GatewayError('METHOD_NOT_FOUND', `Method not found: ${msg.method} was removed in protocol 2026-07-28`, {
      data: { id: msg.id },
    });
  if (!MODERN_REQUEST_METHODS.has(msg.method))
    throw new GatewayError(
      'METHOD_NOT_FOUND',
      `Method not found: ${msg.method.slice(0, 64)} is not a method of protocol 2026-07-28`,
      { data: { id: msg.id } },
    );
}
