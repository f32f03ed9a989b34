import { GatewayError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { Decision } from './decision.js';
import type { DecisionEngine, PolicyRevision } from './engine.js';
import type { PolicyInput } from './input.js';

export interface DecisionOutcome {
  readonly decision: Decision;
  readonly revision: PolicyRevision;
  /** The input exactly as the policy received it (JSON); the audit record hashes it. */
  readonly inputJson: string;
}

const encoder = new TextEncoder();

/**
 * Step: evaluate the serving policy once for this input. No policy loaded =
 * fail closed. A decision asking for a credential TTL over credentials.maxTtlSeconds
 * is capped to it (gitgate_credential_ttl_capped_total; the gateway logs it once per
 * policy revision and TTL).
 */
export function decide(
  engine: DecisionEngine,
  input: PolicyInput,
  metrics: GatewayMetrics,
  maxCredentialTtl: number,
): DecisionOutcome {
  const instance = engine.current();
  if (instance === undefined)
    throw new GatewayError(
      'POLICY_UNAVAILABLE',
      'No policy is loaded yet; the gateway refuses all requests until one is',
    );
  const start = process.hrtime.bigint();
  // Serialized once: the policy evaluates these bytes and the audit trail hashes them.
  const inputJson = JSON.stringify(input);
  let decision = instance.evaluateJson(encoder.encode(inputJson).buffer as ArrayBuffer);
  if (decision.valid && decision.credential.ttl_seconds > maxCredentialTtl) {
    // The operator's ceiling wins: the credential lives credentials.maxTtlSeconds, no longer (counted, logged once).
    metrics.ttlCapped(
      decision.credential.ttl_seconds,
      maxCredentialTtl,
      instance.revision.commit ?? instance.revision.bundleDigest,
    );
    decision = Object.freeze({
      ...decision,
      credential: Object.freeze({ ...decision.credential, ttl_seconds: maxCredentialTtl }),
    });
  }
  metrics.decisionSeconds.observe(Number(process.hrtime.bigint() - start) / 1e9);
  if (!decision.valid) metrics.invalidDecisions.inc();
  return { decision, revision: instance.revision, inputJson };
}

/** Step: a deny becomes the client's JSON-RPC error carrying the policy's reasons. */
export function enforce(outcome: DecisionOutcome): void {
  const { decision, revision } = outcome;
  if (!decision.allow) {
    const code = decision.valid ? 'POLICY_DENIED' : 'DECISION_INVALID';
    throw new GatewayError(code, `Denied by policy: ${decision.reasons.join('; ') || 'no reason given'}`, {
      data: { reasons: decision.reasons, policy_revision: revision.commit ?? revision.bundleDigest },
    });
  }
}

/**
 * Whether a later decision on the same input still stands behind what an earlier one let happen:
 * the same allow, approval requirement, credential and mask rules (reasons and revision may differ).
 */
export function sameTerms(a: Decision, b: Decision): boolean {
  const terms = (d: Decision) =>
    JSON.stringify([
      d.allow,
      d.valid,
      d.approval.required,
      d.approval.min_approvals,
      d.approval.approvers.map((x) => x.replace(/^@/, '').toLowerCase()).sort(),
      d.credential,
      d.mask,
    ]);
  return terms(a) === terms(b);
}
