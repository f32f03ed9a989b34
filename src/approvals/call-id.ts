import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';

/**
 * The hash an approval is bound to: who, which upstream, which method and
 * tool or resource, and the exact arguments. A different argument value is a
 * different call.
 */
export function callHash(c: { caller: { sub: string; issuer: string }; upstream: string; method: string; tool?: string; uri?: string; arguments: unknown }): string {
  return createHash('sha256')
    .update(
      canonicalJson({
        caller: { sub: c.caller.sub, issuer: c.caller.issuer },
        upstream: c.upstream,
        method: c.method,
        target: c.tool ?? c.uri ?? null,
        arguments: c.arguments ?? {},
      }),
    )
    .digest('hex');
}

export function approvalId(hash: string, generation: number): string {
  return `${hash.slice(0, 20)}-${generation}`;
}
