import { GatewayError } from '../errors.js';
import { JsonLimitError, type JsonLimits, MAX_JSON_DEPTH, MAX_JSON_VALUES, parseJsonWithin } from './json-limits.js';

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId;
  readonly method: string;
  readonly params?: Record<string, unknown>;
}

export interface JsonRpcNotification {
  readonly jsonrpc: '2.0';
  readonly method: string;
  readonly params?: Record<string, unknown>;
}

export interface JsonRpcErrorObject {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

export interface JsonRpcResponse {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId | null;
  readonly result?: unknown;
  readonly error?: JsonRpcErrorObject;
}

export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export function isRequest(m: JsonRpcMessage): m is JsonRpcRequest {
  return 'method' in m && 'id' in m && m.id !== undefined;
}

export function isNotification(m: JsonRpcMessage): m is JsonRpcNotification {
  return 'method' in m && !('id' in m && m.id !== undefined);
}

export function isResponse(m: JsonRpcMessage): m is JsonRpcResponse {
  return !('method' in m);
}

function isId(v: unknown): v is JsonRpcId {
  return typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const REQUEST_MEMBERS = new Set(['jsonrpc', 'id', 'method', 'params']);
const RESPONSE_MEMBERS = new Set(['jsonrpc', 'id', 'result', 'error']);

/**
 * Validate one JSON-RPC 2.0 message as MCP uses it (ids are strings or
 * integers, params are objects, no batches). Returns a reason when invalid.
 */
export function checkMessage(v: unknown): string | undefined {
  if (Array.isArray(v))
    return 'JSON-RPC batches are not supported (removed in MCP 2025-06-18): send one message per POST';
  if (!isObject(v)) return 'a JSON-RPC message must be a JSON object';
  if (v.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"';
  // Only JSON-RPC's own members: a request that also carries `result` could be read as a response by
  // the other side, and a member no one expects is one no mask rule or policy looks at.
  const allowed = 'method' in v ? REQUEST_MEMBERS : RESPONSE_MEMBERS;
  const extra = Object.keys(v).find((k) => !allowed.has(k));
  if (extra !== undefined)
    return `${'method' in v ? 'a request or notification' : 'a response'} may not carry "${extra.slice(0, 64)}"`;
  if ('method' in v) {
    if (typeof v.method !== 'string' || v.method === '') return 'method must be a non-empty string';
    if ('params' in v && !isObject(v.params)) return 'params must be an object';
    if ('id' in v && !isId(v.id)) return 'id must be a string or an integer';
    return undefined;
  }
  if (!('id' in v) || !(isId(v.id) || v.id === null)) return 'a message without method must be a response with an id';
  const hasResult = 'result' in v;
  const hasError = 'error' in v;
  if (hasResult === hasError) return 'a response must carry exactly one of result and error';
  if (hasError) {
    const e = v.error;
    if (!isObject(e) || !Number.isInteger(e.code) || typeof e.message !== 'string')
      return 'error must be {code: integer, message: string}';
  }
  return undefined;
}

/**
 * What a client's message may be: at most MAX_JSON_DEPTH deep and MAX_JSON_VALUES values, well-formed
 * UTF-8, no key twice in one object and no `__proto__` key (the policy and an
 * upstream must never read different values out of the same bytes).
 */
export const CLIENT_JSON_LIMITS: JsonLimits = Object.freeze({
  maxDepth: MAX_JSON_DEPTH,
  maxValues: MAX_JSON_VALUES,
  rejectDuplicateKeys: true,
  forbiddenKeys: Object.freeze(['__proto__']),
});

/** Parse an HTTP body into one JSON-RPC message: PARSE_ERROR or INVALID_REQUEST otherwise. */
export function parseMessage(body: Buffer | string, limits: JsonLimits = CLIENT_JSON_LIMITS): JsonRpcMessage {
  let value: unknown;
  try {
    value = parseJsonWithin(body, limits);
  } catch (err) {
    if (err instanceof JsonLimitError) {
      if (err.problem.kind === 'utf8') throw new GatewayError('PARSE_ERROR', `Parse error: ${err.message}`);
      throw new GatewayError('INVALID_REQUEST', `Invalid Request: ${err.message}`);
    }
    throw new GatewayError('PARSE_ERROR', `Parse error: body is not valid JSON (${(err as Error).message})`);
  }
  const problem = checkMessage(value);
  if (problem !== undefined) {
    const id = isObject(value) && isId(value.id) ? value.id : undefined;
    throw new GatewayError('INVALID_REQUEST', `Invalid Request: ${problem}`, id === undefined ? {} : { data: { id } });
  }
  return value as JsonRpcMessage;
}

/** The JSON-RPC error response a client receives for a GatewayError. */
export function errorResponse(id: JsonRpcId | null, err: GatewayError): JsonRpcResponse {
  return {
    jsonrpc: '2.0',
    id,
    error: { code: err.rpcCode, message: err.message, data: { gitgate: err.code, ...(err.data ?? {}) } },
  };
}
