import { boundedCache } from '../cache.js';
import { compileSchema, formatSchemaErrors } from '../config/schema.js';
import { type CompiledRule, compileMask, type MaskRuleInput } from '../masking/mask.js';

/** A mask rule as the policy states it (compiled by masking/mask.ts). */
export type MaskRule = MaskRuleInput;

export interface Approval {
  readonly required: boolean;
  readonly approvers: readonly string[];
  readonly min_approvals: number;
  readonly ttl_seconds: number;
}

export interface Rate {
  readonly calls: number;
  readonly window_seconds: number;
}

/** A validated, normalized decision. `valid: false` means the policy's answer was unusable and this is a deny. */
export interface Decision {
  readonly allow: boolean;
  readonly reasons: readonly string[];
  readonly risk: 'low' | 'high';
  readonly approval: Approval;
  readonly mask: readonly MaskRule[];
  /** `mask`, compiled (paths parsed, detectors resolved). */
  readonly maskRules: readonly CompiledRule[];
  readonly rate?: Rate;
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
    maskRules: [],
    credential: { ttl_seconds: 60, scopes: [] },
    valid,
  });
}

/** Compiled mask rules by their JSON text (a policy's rules repeat across decisions). */
const maskCache = boundedCache<string, readonly CompiledRule[]>({ max: 500, ttlMs: 3_600_000 });

function compileMaskCached(mask: readonly MaskRule[]): readonly CompiledRule[] {
  if (mask.length === 0) return [];
  const key = JSON.stringify(mask);
  let hit = maskCache.get(key);
  if (hit === undefined) {
    hit = compileMask(mask);
    maskCache.set(key, hit);
  }
  return hit;
}

/**
 * Normalized decisions by the JSON text of the policy's raw result: a policy answers most calls
 * with one of a few results, and the same raw result always normalizes to the same decision, so
 * it is validated and compiled once and then shared (deeply frozen: no exchange can change another's).
 */
const decisionCache = boundedCache<string, Decision>({ max: 1000, ttlMs: 0 });
/** Larger raw results are normalized every time rather than kept. */
const MAX_CACHED_RESULT_CHARS = 16 * 1024;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Decisions by the exact JSON text of the policy's result set (what the WASM wrote): the same text
 * always parses to the same result, so a repeated answer is neither parsed nor serialized again.
 */
const resultSetCache = boundedCache<string, Decision>({ max: 1000, ttlMs: 0 });

/** The decision of a result set as the policy's WASM wrote it (`[{"result": …}]`), normalized as normalizeDecision does. */
export function decisionOfResultSet(text: string): Decision {
  const known = resultSetCache.get(text);
  if (known !== undefined) return known;
  let rs: unknown;
  try {
    rs = JSON.parse(text);
  } catch {
    return denyDecision('policy evaluation failed: its result is not JSON', false);
  }
  const raw = Array.isArray(rs) ? (rs[0] as { result?: unknown } | undefined)?.result : undefined;
  const decision = normalizeDecision(raw);
  if (raw !== undefined && text.length <= MAX_CACHED_RESULT_CHARS) resultSetCache.set(text, decision);
  return decision;
}

/**
 * Validate the raw policy result against schemas/decision.schema.json.
 * Undefined or invalid results become a deny whose reason says why (fail closed).
 */
export function normalizeDecision(raw: unknown): Decision {
  if (raw === undefined) return denyDecision('policy produced no decision (gitgate/decision is undefined)', false);
  const key = JSON.stringify(raw);
  const known = decisionCache.get(key);
  if (known !== undefined) return known;
  const decision = deepFreeze(normalizeFresh(raw));
  if (key.length <= MAX_CACHED_RESULT_CHARS) decisionCache.set(key, decision);
  return decision;
}

function normalizeFresh(raw: unknown): Decision {
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
    rate?: Rate;
    credential?: { ttl_seconds?: number; scopes?: string[] };
  };
  let maskRules: readonly CompiledRule[];
  try {
    maskRules = compileMaskCached(d.mask ?? []);
  } catch (err) {
    return denyDecision(`policy decision invalid: ${(err as Error).message}`, false);
  }
  return {
    allow: d.allow,
    reasons: d.reasons,
    risk: d.risk ?? 'low',
    approval: d.approval === undefined ? NO_APPROVAL : { ...NO_APPROVAL, ...d.approval },
    mask: d.mask ?? [],
    maskRules,
    ...(d.rate !== undefined ? { rate: d.rate } : {}),
    credential: { ttl_seconds: d.credential?.ttl_seconds ?? 60, scopes: d.credential?.scopes ?? [] },
    valid: true,
  };
}
