import { META_CREDENTIAL } from '../credentials/credentials.js';
import { GatewayError } from '../errors.js';
import type { JsonRpcRequest } from './jsonrpc.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Which params field names the target of a method, and what else must be an object if present. */
const SHAPES: Readonly<
  Record<string, { readonly target: string; readonly objects: readonly string[]; readonly retries?: true }>
> = {
  'tools/call': { target: 'name', objects: ['arguments', 'task', '_meta', 'inputResponses'], retries: true },
  'prompts/get': { target: 'name', objects: ['arguments', '_meta', 'inputResponses'], retries: true },
  'resources/read': { target: 'uri', objects: ['_meta', 'inputResponses'], retries: true },
  'resources/subscribe': { target: 'uri', objects: ['_meta'] },
  'resources/unsubscribe': { target: 'uri', objects: ['_meta'] },
};

/** completion/complete's members besides `ref`. */
const COMPLETION_MEMBERS = ['ref', 'argument', 'context', '_meta'];

/**
 * Step: the params the policy reads must have MCP's shape. A request whose
 * target (tool or prompt name, resource uri) is missing or not a string, or
 * whose `arguments` is not an object, is invalid (-32602) and never reaches
 * the policy: the policy input, the approval binding and the forwarded bytes
 * all come from this one parsed message, so nothing may be read one way for
 * the decision and sent another way to the upstream.
 */
export function checkParams(msg: JsonRpcRequest): void {
  checkMeta(msg);
  if (msg.method === 'completion/complete') {
    checkCompletionRef(msg);
    return;
  }
  if (msg.method === 'subscriptions/listen') {
    checkListen(msg);
    return;
  }
  if (!Object.hasOwn(SHAPES, msg.method)) return;
  const shape = SHAPES[msg.method]!;
  const invalid = (why: string) =>
    new GatewayError('INVALID_PARAMS', `Invalid params: ${msg.method} ${why}`, { data: { id: msg.id } });
  const params = msg.params;
  if (params === undefined) throw invalid(`needs params with ${shape.target}`);
  const target = params[shape.target];
  if (typeof target !== 'string' || target === '') throw invalid(`needs params.${shape.target} as a non-empty string`);
  const bad = shape.target === 'name' ? badName(target) : badUri(target);
  if (bad !== undefined) throw invalid(`params.${shape.target} ${bad}`);
  for (const key of shape.objects) {
    if (key in params && !isObject(params[key]))
      throw invalid(
        `params.${key} must be an object, got ${Array.isArray(params[key]) ? 'an array' : params[key] === null ? 'null' : typeof params[key]}`,
      );
  }
  // A 2026-07-28 retry after an input-required result sends back the upstream's opaque state, as a string.
  if (shape.retries === true && 'requestState' in params && typeof params.requestState !== 'string')
    throw invalid('params.requestState must be a string');
  // What the upstream receives is what the policy reads: a member it does not know would reach the upstream undecided.
  const unknown = Object.keys(params).find(
    (k) => k !== shape.target && !shape.objects.includes(k) && !(shape.retries === true && k === 'requestState'),
  );
  if (unknown !== undefined) throw invalid(`does not take params.${unknown.slice(0, 64)}`);
}

/** completion/complete names what it completes in `ref`: a prompt (`ref/prompt`, name) or a resource template (`ref/resource`, uri). */
function checkCompletionRef(msg: JsonRpcRequest): void {
  const ref = msg.params?.ref;
  const invalid = (why: string) =>
    new GatewayError('INVALID_PARAMS', `Invalid params: completion/complete ${why}`, { data: { id: msg.id } });
  const unknown = Object.keys(msg.params ?? {}).find((k) => !COMPLETION_MEMBERS.includes(k));
  if (unknown !== undefined) throw invalid(`does not take params.${unknown.slice(0, 64)}`);
  if (!isObject(ref)) throw invalid('needs params.ref as an object');
  if (ref.type === 'ref/prompt') {
    if (typeof ref.name !== 'string' || ref.name === '')
      throw invalid('needs params.ref.name (a prompt) as a non-empty string');
    const bad = badName(ref.name);
    if (bad !== undefined) throw invalid(`params.ref.name ${bad}`);
  } else if (ref.type === 'ref/resource') {
    if (typeof ref.uri !== 'string' || ref.uri === '') throw invalid('needs params.ref.uri as a non-empty string');
    const bad = badUri(ref.uri);
    if (bad !== undefined) throw invalid(`params.ref.uri ${bad}`);
  } else throw invalid('params.ref.type must be ref/prompt or ref/resource');
}

/**
 * A tool's or prompt's name is printable ASCII without spaces, at most 128 characters (MCP asks
 * for letters, digits, `_`, `-`, `.` and `/`): the policy matches names exactly, so a name an
 * upstream might read as another (another case is the upstream's own doing; a homoglyph, a
 * trailing space or NUL, a control character) is refused, not decided.
 */
export const MAX_NAME_LENGTH = 128;

function badName(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e)
      return `holds ${c === 0x20 ? 'a space' : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`}: a name is printable ASCII without spaces`;
  }
  return undefined;
}

/** A uri holds no control character (RFC 3986 has none; a terminal, a log or an upstream may act on one). */
function badUri(uri: string): string | undefined {
  for (let i = 0; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
      return `holds the control character U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return undefined;
}

/**
 * A 2026-07-28 subscriptions/listen names the resources it subscribes to as an array of uris:
 * each is decided as resources/subscribe of it would be. Any other shape would reach the upstream
 * undecided.
 */
function checkListen(msg: JsonRpcRequest): void {
  const invalid = (why: string) =>
    new GatewayError('INVALID_PARAMS', `Invalid params: subscriptions/listen ${why}`, { data: { id: msg.id } });
  const notifications = msg.params?.notifications;
  if (notifications === undefined) return;
  if (!isObject(notifications)) throw invalid('params.notifications must be an object');
  const subs = notifications.resourceSubscriptions;
  if (subs === undefined) return;
  if (!Array.isArray(subs) || subs.some((u) => typeof u !== 'string' || u === '' || badUri(u) !== undefined))
    throw invalid('params.notifications.resourceSubscriptions must be an array of uris');
}

/**
 * `_meta`, when a request has it, is an object without gitgate's credential key, and its progress
 * token (which gitgate itself reads, to route progress back to the caller) a string or an integer,
 * as MCP defines it.
 */
function checkMeta(msg: JsonRpcRequest): void {
  if (msg.params === undefined || !('_meta' in msg.params)) return;
  const meta = msg.params._meta;
  const invalid = (why: string) =>
    new GatewayError('INVALID_PARAMS', `Invalid params: ${msg.method} ${why}`, { data: { id: msg.id } });
  if (!isObject(meta)) throw invalid('params._meta must be an object');
  if (Object.hasOwn(meta, META_CREDENTIAL))
    throw invalid(`params._meta may not carry ${META_CREDENTIAL}: that is where gitgate puts its own credential`);
  if (!('progressToken' in meta)) return;
  const t = meta.progressToken;
  if (!(typeof t === 'string' || (typeof t === 'number' && Number.isSafeInteger(t))))
    throw invalid('params._meta.progressToken must be a string or an integer');
}
