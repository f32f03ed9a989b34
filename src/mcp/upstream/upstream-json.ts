import { GatewayError } from '../../errors.js';
import { checkMessage, type JsonRpcMessage } from '../jsonrpc.js';

/**
 * How deep upstream JSON may nest. Masking, canonical JSON and the audit walk
 * messages recursively; an answer nested 100k deep would overflow the stack
 * there, so it is refused before it is parsed.
 */
export const MAX_JSON_DEPTH = 512;

/** Whether `text` nests arrays and objects deeper than `max`: one pass, strings skipped. */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

/** Parse upstream bytes as JSON no deeper than MAX_JSON_DEPTH; UPSTREAM_PROTOCOL otherwise. */
export function parseUpstreamJson(source: string, text: string): unknown {
  if (nestsDeeperThan(text, MAX_JSON_DEPTH))
    throw new GatewayError('UPSTREAM_PROTOCOL', `${source} sent JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new GatewayError('UPSTREAM_PROTOCOL', `${source} sent invalid JSON`);
  }
}

/** One upstream message (or several, from an HTTP body holding an array), each valid JSON-RPC. */
export function parseUpstreamMessages(source: string, text: string): JsonRpcMessage[] {
  const v = parseUpstreamJson(source, text);
  const list = Array.isArray(v) ? (v as unknown[]) : [v];
  for (const m of list) {
    const problem = checkMessage(m);
    if (problem !== undefined)
      throw new GatewayError('UPSTREAM_PROTOCOL', `${source} sent an invalid JSON-RPC message: ${problem}`);
  }
  return list as JsonRpcMessage[];
}
