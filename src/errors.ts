/**
 * The one error type of gitgate. Every failure a client can see has a stable
 * `code`; this file is the only place that maps a code to an HTTP status and a
 * JSON-RPC error code (docs/errors.md lists the same table for humans).
 */

export const ERRORS = {
  // request shape
  PARSE_ERROR: { status: 400, rpc: -32700, message: 'Parse error' },
  INVALID_REQUEST: { status: 400, rpc: -32600, message: 'Invalid Request' },
  // HTTP 200: the message is well-formed JSON-RPC; its params are not what the method takes
  INVALID_PARAMS: { status: 200, rpc: -32602, message: 'Invalid params' },
  METHOD_NOT_FOUND: { status: 404, rpc: -32601, message: 'Method not found' },
  META_INVALID: { status: 400, rpc: -32602, message: 'Invalid params: _meta' },
  HEADER_MISMATCH: { status: 400, rpc: -32020, message: 'Header mismatch' },
  UNSUPPORTED_PROTOCOL_VERSION: { status: 400, rpc: -32022, message: 'Unsupported protocol version' },
  SESSION_REQUIRED: { status: 400, rpc: -32600, message: 'Mcp-Session-Id header is required' },
  NOT_ACCEPTABLE: { status: 406, rpc: -32600, message: 'Not Acceptable' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, rpc: -32600, message: 'Unsupported Media Type' },
  BODY_TOO_LARGE: { status: 413, rpc: -32600, message: 'Payload Too Large' },
  METHOD_NOT_ALLOWED: { status: 405, rpc: -32600, message: 'Method Not Allowed' },
  REQUEST_TIMEOUT: { status: 408, rpc: -32600, message: 'Request Timeout' },
  HEADERS_TOO_LARGE: { status: 431, rpc: -32600, message: 'Request Header Fields Too Large' },
  // who
  AUTH_REQUIRED: { status: 401, rpc: -32001, message: 'Authentication required' },
  AUTH_INVALID: { status: 401, rpc: -32001, message: 'Invalid token' },
  ORIGIN_FORBIDDEN: { status: 403, rpc: -32003, message: 'Origin not allowed' },
  // where
  UPSTREAM_UNKNOWN: { status: 404, rpc: -32004, message: 'Unknown upstream' },
  SESSION_UNKNOWN: { status: 404, rpc: -32005, message: 'Unknown session' },
  SESSION_LIMIT: { status: 503, rpc: -32006, message: 'Too many sessions' },
  SESSION_QUOTA: { status: 429, rpc: -32007, message: 'Too many sessions for this caller' },
  TOO_MANY_CONNECTIONS: { status: 503, rpc: -32008, message: 'Too many connections' },
  SERVER_BUSY: { status: 503, rpc: -32009, message: 'Server busy' },
  // policy (HTTP 200: the JSON-RPC exchange itself succeeded, the policy spoke)
  POLICY_DENIED: { status: 200, rpc: -32010, message: 'Denied by policy' },
  APPROVAL_REQUIRED: { status: 200, rpc: -32011, message: 'Approval required' },
  APPROVAL_DENIED: { status: 200, rpc: -32019, message: 'Approval denied' },
  POLICY_UNAVAILABLE: { status: 503, rpc: -32012, message: 'Policy unavailable' },
  DECISION_INVALID: { status: 200, rpc: -32013, message: 'Policy decision invalid' },
  RATE_LIMITED: { status: 429, rpc: -32017, message: 'Rate limited' },
  AUDIT_UNAVAILABLE: { status: 503, rpc: -32018, message: 'Audit log unavailable' },
  STORE_UNAVAILABLE: { status: 503, rpc: -32025, message: 'Shared store unavailable' },
  // upstream
  UPSTREAM_UNAVAILABLE: { status: 502, rpc: -32014, message: 'Upstream unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, rpc: -32015, message: 'Upstream timed out' },
  UPSTREAM_PROTOCOL: { status: 502, rpc: -32016, message: 'Upstream protocol error' },
  UPSTREAM_TOO_LARGE: { status: 502, rpc: -32021, message: 'Upstream response too large' },
  // everything else
  INTERNAL: { status: 500, rpc: -32603, message: 'Internal error' },
  CONFIG_INVALID: { status: 500, rpc: -32603, message: 'Configuration invalid' },
  POLICY_BUILD_FAILED: { status: 500, rpc: -32603, message: 'Policy build failed' },
} as const satisfies Record<string, { status: number; rpc: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface GatewayErrorOptions {
  cause?: unknown;
  /** Extra JSON-RPC `error.data` fields shown to the client. */
  data?: Record<string, unknown>;
  /** Extra HTTP response headers (e.g. WWW-Authenticate). */
  headers?: Record<string, string>;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, message?: string, options: GatewayErrorOptions = {}) {
    super(message ?? ERRORS[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.data = options.data;
    this.headers = options.headers;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  get rpcCode(): number {
    return ERRORS[this.code].rpc;
  }
}

/** Anything thrown becomes a GatewayError; unknown failures are INTERNAL and keep their cause. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('INTERNAL', 'Internal error', { cause: err });
}
