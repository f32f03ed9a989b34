import { compileSchema, formatSchemaErrors } from '../config/schema.js';

export interface MaskRule {
  readonly path: string;
  readonly detectors?: readonly string[];
  readonly redact?: boolean;
}

export interface Approval {
  readonly required: boolean;
  readonly approvers: readonly string[];
  readonly min_approvals: number;
  readonly ttl_seconds: number;
}

/** A validated, normalized decision. `valid: false` means the policy's answer was unusable and this is a deny. */
export interface Decision {
  readonly allow: boolean;
  readonly reasons: readonly string[];
  readonly risk: 'low' | 'high';
  readonly approval: Approval;
  readonly mask: readonly MaskRule[];
  readonly credential: { readonly ttl_seconds: number; readonly scopes: readonly string[] };
  readonly valid: boolean;
}

const NO_APPROVAL: Approval = Object.freeze({ required: false, approvers: [], min_approvals: 1, ttl_seconds: 900 });

export function denyDecision(reason: string, valid = true): Decision {
  return Object.freeze({
    allow: false,
    reasons: [reason],
    risk: 'low',
    approval: NO_APPROVAL,
    mask: [],
    credential: { ttl_seconds: 60, scopes: [] },
    valid,
  });
}

/**
 * Validate the raw policy result against schemas/decision.schema.json.
 * Undefined or invalid results become a deny whose reason says why (fail closed).
 */
export function normalizeDecision(raw: unknown): Decision {
  if (raw === undefined) return denyDecision('policy produced no decision (gitgate/decision is undefined)', false);
  const validate = compileSchema('decision');
  if (!validate(raw)) {
    return denyDecision(`policy decision invalid: ${formatSchemaErrors(validate.errors).join('; ')}`, false);
  }
  const d = raw as {
    allow: boolean;
    reasons: string[];
    risk?: 'low' | 'high';
    approval?: Partial<Approval> & { required: boolean };
    mask?: MaskRule[];
    credential?: { ttl_seconds?: number; scopes?: string[] };
  };
  return {
    allow: d.allow,
    reasons: d.reasons,
    risk: d.risk ?? 'low',
    approval: d.approval === undefined ? NO_APPROVAL : { ...NO_APPROVAL, ...d.approval },
    mask: d.mask ?? [],
    credential: { ttl_seconds: d.credential?.ttl_seconds ?? 60, scopes: d.credential?.scopes ?? [] },
    valid: true,
  };
}
