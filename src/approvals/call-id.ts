import { createHash, randomBytes } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import { callerMeta } from '../mcp/protocol.js';

/**
 * The request's params as they reach the upstream, with only the caller's own
 * `_meta` (progress tokens and the 2026 envelope differ per request and are not
 * part of the call; anything else in `_meta` reaches the upstream, so it is).
 */
export function callParams(params: unknown): unknown {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return params ?? {};
  const { _meta: _m, ...rest } = params as Record<string, unknown>;
  const meta = callerMeta(params as Record<string, unknown>);
  return meta === undefined ? rest : { ...rest, _meta: meta };
}

/**
 * The hash an approval is bound to: who, which upstream, which method, and
 * every parameter the upstream receives (tool or prompt name, uri, the exact
 * arguments whatever their type, and any other field), in canonical JSON. A
 * different value anywhere is a different call.
 */
export function callHash(c: {
  caller: { sub: string; issuer: string };
  upstream: string;
  method: string;
  params: unknown;
}): string {
  return createHash('sha256')
    .update(
      canonicalJson({
        caller: { sub: c.caller.sub, issuer: c.caller.issuer },
        upstream: c.upstream,
        method: c.method,
        params: callParams(c.params),
      }),
    )
    .digest('hex');
}

/**
 * `<first 20 hex of the hash>-<generation>-<8 random hex>`. The random part
 * makes every request unique where reviewers look: another gitgate sharing the
 * approvals repo, or this one after its data dir was reset, computes the same
 * hash and generation, and must never find (and adopt) that request's pull request.
 */
export function approvalId(hash: string, generation: number, nonce: string = randomBytes(4).toString('hex')): string {
  return `${hash.slice(0, 20)}-${generation}-${nonce}`;
}
