import { GatewayError } from '../errors.js';
import { isRequest, type JsonRpcMessage, type JsonRpcRequest } from './jsonrpc.js';

/** Session-based revisions gitgate serves to clients (and speaks to upstreams). */
export const LEGACY_VERSIONS: readonly string[] = ['2025-11-25', '2025-06-18', '2025-03-26'];
export const UPSTREAM_PROTOCOL_VERSION = '2025-11-25';
/** The stateless revision: no initialize, no sessions, per-request `_meta`, Mcp-Method / Mcp-Name headers. */
export const MODERN_VERSION = '2026-07-28';
const SUPPORTED_VERSIONS: readonly string[] = [MODERN_VERSION, ...LEGACY_VERSIONS];

/** Methods removed in 2026-07-28: answered -32601 (HTTP 404), never forwarded. */
export const REMOVED_AT_MODERN: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
]);

/** Every client request method of 2026-07-28 (the tasks extension included); anything else does not exist there. */
export const MODERN_REQUEST_METHODS: ReadonlySet<string> = new Set([
  'server/discover',
  'subscriptions/listen',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tasks/update',
  'tasks/cancel',
]);

export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
export const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo';
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
export const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
const ENVELOPE_KEYS = [META_PROTOCOL_VERSION, META_CLIENT_INFO, META_CLIENT_CAPABILITIES, META_LOG_LEVEL];

/** Which body field the `Mcp-Name` header mirrors, per method. */
export const MCP_NAME_SOURCE: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'tasks/get': 'taskId',
  'tasks/update': 'taskId',
  'tasks/cancel': 'taskId',
};

export type Headers = Readonly<Record<string, string | string[] | undefined>>;

export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Header values that are not plain ASCII travel as `=?base64?<b64 of utf8>?=`. */
export function decodeHeaderValue(v: string): string {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(v);
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : v;
}

/**
 * A header value as 2026-07-28 sends it: plain when printable ASCII, else the base64 sentinel. A
 * value that itself reads as the sentinel is encoded too: sent plain, the upstream would decode it
 * to another name than the body's.
 */
export function encodeHeaderValue(v: string): string {
  return /^[\x20-\x7e]*$/.test(v) && v.trim() === v && decodeHeaderValue(v) === v
    ? v
    : `=?base64?${Buffer.from(v, 'utf8').toString('base64')}?=`;
}

export interface ProtocolContext {
  readonly era: 'legacy' | 'modern';
  /** The revision this message speaks (legacy: header or session's; modern: 2026-07-28). */
  readonly version: string | undefined;
}

function envelopeVersion(msg: JsonRpcMessage): string | undefined {
  if (!('method' in msg)) return undefined;
  const meta = msg.params?._meta;
  if (meta === null || typeof meta !== 'object') return undefined;
  const v = (meta as Record<string, unknown>)[META_PROTOCOL_VERSION];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Decide which protocol era a POST speaks and validate the 2026-07-28 headers
 * against the body: a mismatch is HTTP 400 with JSON-RPC -32020.
 */
export function classifyProtocol(headers: Headers, msg: JsonRpcMessage): ProtocolContext {
  const headerVersion = header(headers, 'mcp-protocol-version');
  const bodyVersion = envelopeVersion(msg);
  const modern = bodyVersion === MODERN_VERSION || headerVersion === MODERN_VERSION;
  const id = 'id' in msg && msg.id !== undefined ? { id: msg.id } : {};
  // -32022 with what gitgate serves and what was asked for (2026-07-28 basic/lifecycle); the request's id travels along.
  // A request with a per-request envelope is told the per-request revisions (what server/discover lists); a session-era one all.
  const unsupported = (requested: string, where: string, supported: readonly string[]) =>
    new GatewayError(
      'UNSUPPORTED_PROTOCOL_VERSION',
      `Unsupported protocol version ${requested.slice(0, 40)} in ${where}; supported: ${supported.join(', ')}`,
      { data: { ...id, supported: [...supported], requested: requested.slice(0, 40) } },
    );
  if (!modern) {
    if (bodyVersion !== undefined) throw unsupported(bodyVersion, '_meta', [MODERN_VERSION]);
    if (headerVersion !== undefined && !LEGACY_VERSIONS.includes(headerVersion))
      throw unsupported(headerVersion, 'MCP-Protocol-Version', SUPPORTED_VERSIONS);
    return { era: 'legacy', version: headerVersion };
  }
  const mismatch = (why: string) => new GatewayError('HEADER_MISMATCH', `Header mismatch: ${why}`, { data: id });
  if (isRequest(msg)) {
    if (headerVersion === undefined) throw mismatch('MCP-Protocol-Version header is required');
    checkEnvelope(msg, id);
  }
  if (headerVersion !== undefined && bodyVersion !== undefined && headerVersion !== bodyVersion) {
    throw mismatch(`MCP-Protocol-Version header ${headerVersion} disagrees with _meta protocolVersion ${bodyVersion}`);
  }
  if (isRequest(msg)) {
    const method = header(headers, 'mcp-method');
    if (method === undefined) throw mismatch('Mcp-Method header is required');
    if (decodeHeaderValue(method) !== msg.method)
      throw mismatch(`Mcp-Method header "${method}" does not match body method "${msg.method}"`);
    const field = Object.hasOwn(MCP_NAME_SOURCE, msg.method) ? MCP_NAME_SOURCE[msg.method] : undefined;
    const nameHeader = header(headers, 'mcp-name');
    if (field !== undefined) {
      const bodyValue = msg.params?.[field];
      if (typeof bodyValue === 'string') {
        if (nameHeader === undefined) throw mismatch(`Mcp-Name header is required for ${msg.method}`);
        if (decodeHeaderValue(nameHeader) !== bodyValue) {
          throw mismatch(`Mcp-Name header "${nameHeader}" does not match params.${field} "${bodyValue}"`);
        }
      }
    } else if (nameHeader !== undefined) {
      throw mismatch(`Mcp-Name header is not defined for ${msg.method}`);
    }
  }
  return { era: 'modern', version: MODERN_VERSION };
}

/**
 * A 2026-07-28 request carries its envelope in `_meta`: the protocol version (a string) and the
 * client's capabilities (an object); without them it is malformed (-32602, HTTP 400), never forwarded.
 */
function checkEnvelope(msg: JsonRpcRequest, id: { id?: unknown }): void {
  const meta = msg.params?._meta;
  const invalid = (why: string) => new GatewayError('META_INVALID', `Invalid params: ${why}`, { data: id });
  if (meta === undefined) throw invalid('a 2026-07-28 request needs params._meta');
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw invalid('params._meta must be an object');
  const m = meta as Record<string, unknown>;
  if (typeof m[META_PROTOCOL_VERSION] !== 'string') throw invalid(`_meta["${META_PROTOCOL_VERSION}"] must be a string`);
  const caps = m[META_CLIENT_CAPABILITIES];
  if (caps === null || typeof caps !== 'object' || Array.isArray(caps))
    throw invalid(`_meta["${META_CLIENT_CAPABILITIES}"] must be an object`);
}

/**
 * The caller's own `_meta`: everything but what differs per request on the wire
 * (the progress token, the 2026-07-28 envelope). It reaches the upstream, so the
 * policy sees it, an approval is bound to it, and it is recorded. Undefined when empty.
 */
export function callerMeta(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const meta = params?._meta;
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(meta)) if (k !== 'progressToken' && !ENVELOPE_KEYS.includes(k)) out[k] = v;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The request without the 2026-07-28 envelope in its `_meta`: itself when it carries none. */
export function withoutEnvelope(msg: JsonRpcRequest): JsonRpcRequest {
  const meta = msg.params?._meta;
  if (meta === null || typeof meta !== 'object' || !ENVELOPE_KEYS.some((k) => Object.hasOwn(meta, k))) return msg;
  const params = stripEnvelope(msg.params);
  return params === undefined ? msg : { ...msg, params };
}

/** Remove the 2026-07-28 envelope from `_meta` before a request goes to a session-based upstream. */
export function stripEnvelope(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (params === undefined) return undefined;
  const meta = params._meta;
  if (meta === null || typeof meta !== 'object') return params;
  const rest = { ...(meta as Record<string, unknown>) };
  for (const k of ENVELOPE_KEYS) delete rest[k];
  const out = { ...params };
  if (Object.keys(rest).length === 0) delete out._meta;
  else out._meta = rest;
  return out;
}

/** Methods whose 2026-07-28 results carry cache hints (`ttlMs`, `cacheScope`). */
const CACHEABLE_METHODS = new Set([
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'server/discover',
]);

/**
 * A session-based upstream's result, re-shaped for a 2026-07-28 client:
 * `resultType` stamped, cache hints filled (always `private`: gitgate's answers
 * depend on the caller), the upstream's identity under `_meta` serverInfo.
 */
export function toModernResult(method: string, result: unknown, serverInfo?: unknown): unknown {
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return result;
  const out: Record<string, unknown> = { ...(result as Record<string, unknown>) };
  out.resultType ??= 'complete';
  if (out.resultType === 'complete' && CACHEABLE_METHODS.has(method)) {
    if (!(Number.isInteger(out.ttlMs) && (out.ttlMs as number) >= 0)) out.ttlMs = 0;
    out.cacheScope = 'private';
  }
  if (serverInfo !== undefined) {
    const meta = out._meta;
    if (meta === undefined) out._meta = { [META_SERVER_INFO]: serverInfo };
    else if (meta !== null && typeof meta === 'object' && !Array.isArray(meta) && !(META_SERVER_INFO in meta))
      out._meta = { ...meta, [META_SERVER_INFO]: serverInfo };
  }
  return out;
}
