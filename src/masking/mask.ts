import { decodeBase64Text } from '../base64.js';
import { DETECTORS, isDetector, redactText } from './detectors.js';
import { compilePath, MaskPathError, type Segment, select } from './path.js';

export interface MaskRuleInput {
  readonly path: string;
  readonly detectors?: readonly string[];
  readonly redact?: boolean;
}

export interface CompiledRule {
  readonly path: string;
  readonly segments: readonly Segment[];
  readonly detectors: readonly string[];
  readonly redact: boolean;
}

export interface MaskReport {
  /** Strings changed by detectors plus fields redacted whole. */
  readonly changed: number;
  /** Detector hits by name. */
  readonly found: Record<string, number>;
}

/** Compile mask rules once per decision; unknown detectors and unparsable paths throw MaskPathError. */
export function compileMask(rules: readonly MaskRuleInput[]): readonly CompiledRule[] {
  return rules.map((r) => {
    const unknown = (r.detectors ?? []).filter((d) => !isDetector(d));
    if (unknown.length > 0) throw new MaskPathError(`unknown detector(s) ${unknown.join(', ')} in mask rule ${r.path}`);
    if (r.redact !== true && (r.detectors ?? []).length === 0)
      throw new MaskPathError(`mask rule ${r.path} names no detector and does not redact`);
    return { path: r.path, segments: compilePath(r.path), detectors: r.detectors ?? [], redact: r.redact === true };
  });
}

/** A value of the same JSON type that carries nothing. */
export function emptyLike(v: unknown): unknown {
  if (typeof v === 'string') return '[redacted]';
  if (typeof v === 'number') return 0;
  if (typeof v === 'boolean') return false;
  if (Array.isArray(v)) return [];
  if (v !== null && typeof v === 'object') return {};
  return null;
}

/**
 * A masked copy of a message, for what is shown or recorded (the audit record, an
 * approval's reviewers); the message itself, which is forwarded, stays untouched.
 * With no rules, the message itself.
 */
export function maskedCopy<T>(message: T, rules: readonly CompiledRule[]): T {
  if (rules.length === 0) return message;
  const copy = structuredClone(message);
  maskMessage(copy, rules);
  return copy;
}

/**
 * Apply the rules to one JSON-RPC message, in place (the message is the
 * gateway's own parsed copy). Strings stay strings, shapes stay shapes.
 */
export function maskMessage(message: unknown, rules: readonly CompiledRule[]): MaskReport {
  let changed = 0;
  const found: Record<string, number> = {};
  const scrub = (parent: Record<string | number, unknown>, key: string | number, detectors: readonly string[]) => {
    const v = parent[key];
    if (typeof v === 'string') {
      const r = key === BLOB ? redactBlob(v, detectors) : redactText(v, detectors);
      if (r.text !== v) {
        parent[key] = r.text;
        changed++;
        for (const [k, n] of Object.entries(r.found)) found[k] = (found[k] ?? 0) + n;
      }
    } else if (v !== null && typeof v === 'object') {
      for (const k of Array.isArray(v) ? v.keys() : Object.keys(v))
        scrub(v as Record<string | number, unknown>, k, detectors);
      if (!Array.isArray(v)) renameKeys(v as Record<string, unknown>, detectors);
    }
  };
  /** A secret used as a key (`{"ghp_…": {…}}`) is masked like one in a value; colliding names get a number. */
  const renameKeys = (obj: Record<string, unknown>, detectors: readonly string[]) => {
    for (const k of Object.keys(obj)) {
      const r = redactText(k, detectors);
      if (r.text === k) continue;
      let name = r.text;
      for (let n = 2; Object.hasOwn(obj, name); n++) name = `${r.text} (${n})`;
      obj[name] = obj[k];
      delete obj[k];
      changed++;
      for (const [d, c] of Object.entries(r.found)) found[d] = (found[d] ?? 0) + c;
    }
  };
  for (const rule of rules) {
    for (const { parent, key } of select(message, rule.segments)) {
      const p = parent as Record<string | number, unknown>;
      if (rule.redact) {
        p[key] = emptyLike(p[key]);
        changed++;
      } else scrub(p, key, rule.detectors);
    }
  }
  return { changed, found };
}

/**
 * A resource's binary contents (`blob`, base64) are scanned too when they are text (a file read
 * as a blob: a config, a key): masked, they are the masked text in base64 again. Binary blobs stay.
 */
const BLOB = 'blob';

function redactBlob(v: string, detectors: readonly string[]): { text: string; found: Record<string, number> } {
  const text = decodeBase64Text(v);
  // Not text in base64: scanned as the string it is.
  if (text === undefined) return redactText(v, detectors);
  const r = redactText(text, detectors);
  return r.text === text
    ? { text: v, found: {} }
    : { text: Buffer.from(r.text, 'utf8').toString('base64'), found: r.found };
}

/**
 * The detectors every audit record is cleaned with, whatever the policy's mask rules: the same
 * credentials the default policy masks (credentials never belong in the audit repo).
 */
export const CREDENTIAL_DETECTORS: readonly string[] = [
  'aws_access_key',
  'aws_secret_key',
  'github_token',
  'private_key',
  'jwt',
  'bearer_token',
];
const CREDENTIALS = compileMask([{ path: '$.v', detectors: CREDENTIAL_DETECTORS }]);

function holdsCredential(v: unknown, key?: string): boolean {
  if (typeof v === 'string') {
    const text = key === BLOB ? (decodeBase64Text(v) ?? v) : v;
    return CREDENTIAL_DETECTORS.some((d) => DETECTORS[d]!(text).length > 0);
  }
  if (Array.isArray(v)) return v.some((x) => holdsCredential(x));
  if (v !== null && typeof v === 'object')
    return Object.entries(v).some(([k, x]) => holdsCredential(k) || holdsCredential(x, k));
  return false;
}

/** `value` itself when no credential detector finds anything in its strings, else a copy with them redacted. */
export function withoutCredentials<T>(value: T): T {
  if (!holdsCredential(value)) return value;
  const box = { v: structuredClone(value) };
  maskMessage(box, CREDENTIALS);
  return box.v;
}
