import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Identity } from '../identity/identity.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../mcp/jsonrpc.js';
import { callerMeta } from '../mcp/protocol.js';
import type { DecisionOutcome } from '../policy/decide.js';
import type { PolicyInput } from '../policy/input.js';
import { type ApprovalService, approvalError } from './service.js';

export interface ParkOptions {
  readonly holdMs: number;
  readonly signal: AbortSignal;
  /** The caller's login (GitHub login claim, else approvals.logins[sub], else the sub); the service knows the requester by all their names. */
  readonly loginOf: (identity: Identity) => string;
  /** Before a call approved while held is released: throws when the caller or the policy of now no longer let it go. */
  readonly recheck: () => void;
}

/**
 * Step: a call that needs approval is parked. Yields progress while held (when
 * the client gave a progress token), then the upstream's messages once the
 * approval is claimed; otherwise ends with an error carrying the approval link.
 */
export async function* park(
  approvals: ApprovalService,
  identity: Identity,
  msg: JsonRpcRequest,
  /** The request as the decision's mask rules leave it (masked once, by the pipeline): what reviewers see. */
  shown: JsonRpcRequest,
  input: PolicyInput,
  outcome: DecisionOutcome,
  exchange: Exchange,
  opts: ParkOptions,
  forward: () => Promise<AsyncIterable<JsonRpcMessage>>,
): AsyncGenerator<JsonRpcMessage> {
  const d = outcome.decision;
  const ticket = await approvals.admit({
    caller: {
      sub: identity.sub,
      issuer: identity.issuer,
      ...(identity.email !== undefined ? { email: identity.email } : {}),
      ...(identity.githubLogin !== undefined ? { githubLogin: identity.githubLogin } : {}),
    },
    call: {
      upstream: input.upstream.name,
      method: input.mcp.method,
      ...(input.mcp.tool !== undefined ? { tool: input.mcp.tool } : {}),
      ...(input.mcp.prompt !== undefined ? { prompt: input.mcp.prompt } : {}),
      ...(input.mcp.uri !== undefined ? { uri: input.mcp.uri } : {}),
      ...reviewed(shown.params, msg.params),
      // Bound to the params as sent (not the policy input's view of them, which reads non-object arguments as {}).
      rawParams: msg.params,
    },
    approvers: d.approval.approvers,
    minApprovals: d.approval.min_approvals,
    ttlSeconds: d.approval.ttl_seconds,
    reasons: d.reasons,
    risk: d.risk,
    policy: { revision: outcome.revision.commit ?? null, bundleDigest: outcome.revision.bundleDigest },
  });
  exchange.link({ approval_id: ticket.approval.id });
  const token = (msg.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
  const held = approvals.hold(ticket, {
    holdMs: opts.holdMs,
    signal: opts.signal,
    recheck: opts.recheck,
    ...(typeof token === 'string' || typeof token === 'number' ? { progressToken: token } : {}),
  });
  let r = await held.next();
  while (r.done !== true) {
    yield r.value;
    r = await held.next();
  }
  const final = r.value;
  if (final.kind !== 'go') throw approvalError(final);
  if (final.approval.status !== 'executed')
    throw new GatewayError('INTERNAL', 'approval released without being claimed');
  yield* await forward();
}

/** What reviewers see of the params, and how many of its values masking changed (so they are told what they cannot see). */
function reviewed(shown: unknown, sent: unknown): ReturnType<typeof shownParams> & { masked?: number } {
  const view = shownParams(shown);
  const raw = shownParams(sent);
  const masked = differing(view.arguments, raw.arguments) + differing(view.otherParams, raw.otherParams);
  return { ...view, ...(masked > 0 ? { masked } : {}) };
}

/** How many leaf values differ between two JSON values (a value replaced whole counts once). */
function differing(a: unknown, b: unknown): number {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object';
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    let n = 0;
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) n += differing(a[k], b[k]);
    return n;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? 0 : 1;
}

/** What reviewers see of the params: the arguments as they are, and any other field besides name, uri and _meta. */
function shownParams(params: unknown): { arguments: unknown; otherParams?: Record<string, unknown> } {
  if (params === null || typeof params !== 'object' || Array.isArray(params))
    return { arguments: {}, ...(params !== undefined ? { otherParams: { params } } : {}) };
  const { name: _n, uri: _u, _meta: _m, arguments: args, ...rest } = params as Record<string, unknown>;
  // The caller's own _meta reaches the upstream: reviewers see it (the progress token and envelope are not shown).
  const meta = callerMeta(params as Record<string, unknown>);
  const other = meta === undefined ? rest : { ...rest, _meta: meta };
  return {
    arguments: args === undefined ? {} : args,
    ...(Object.keys(other).length > 0 ? { otherParams: other } : {}),
  };
}
