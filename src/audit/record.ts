import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';

export type AuditEventType =
  | 'session.open'
  | 'session.close'
  | 'decision'
  | 'response'
  | 'error'
  | 'approval.requested'
  | 'approval.approved'
  | 'approval.denied'
  | 'approval.expired'
  | 'approval.executed'
  | 'checkpoint';

/** What an event says; the log adds v, stream, seq, ts and prev. */
export interface AuditEvent {
  readonly type: AuditEventType;
  /** gitgate's id of the HTTP exchange the event belongs to. */
  readonly exchange?: string;
  readonly caller?: { readonly sub: string; readonly groups?: readonly string[]; readonly issuer?: string };
  readonly upstream?: string;
  readonly session?: string;
  readonly method?: string;
  readonly tool?: string;
  readonly data?: Record<string, unknown>;
  /** When it happened (default: when it is appended). */
  readonly ts?: string;
}

export interface AuditRecord extends AuditEvent {
  readonly v: 1;
  readonly stream: string;
  readonly seq: number;
  readonly ts: string;
  /** sha256 (hex) of the previous line of this stream, exactly as stored; null for seq 0. */
  readonly prev: string | null;
}

/** One-method signer (the audit key never leaves it). */
export interface AuditSigner {
  readonly kid: string;
  sign(data: Buffer): Buffer;
  /** The public key, to publish as keys/<kid>.jwk. */
  publicJwk(): Record<string, unknown>;
}

export function ed25519Signer(kid: string, key: KeyObject): AuditSigner {
  const pub = createPublicKey(key).export({ format: 'jwk' }) as Record<string, unknown>;
  return {
    kid,
    sign: (data) => sign(null, data, key),
    publicJwk: () => ({ ...pub, kid, alg: 'EdDSA', use: 'sig' }),
  };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/**
 * The stored form of a record: one JSON line holding the record and a JWS
 * with detached payload (RFC 7515 appendix F) over its canonical JSON.
 */
export function signRecord(signer: AuditSigner, record: AuditRecord): string {
  const protectedHeader = b64(JSON.stringify({ alg: 'EdDSA', kid: signer.kid }));
  const canonical = canonicalJson(record);
  const signature = b64(signer.sign(Buffer.from(`${protectedHeader}.${b64(canonical)}`)));
  return `{"jws":"${protectedHeader}..${signature}","record":${canonical}}`;
}

export function hashLine(line: string): string {
  return createHash('sha256').update(line).digest('hex');
}

export interface ParsedLine {
  readonly record: AuditRecord;
  readonly kid: string;
  /** The JWS in compact form with its payload attached (verifiable by any JOSE library). */
  readonly compact: string;
}

const RECORD_KEY = ',"record":';

/**
 * Fast path for bulk readers: the stored record text *is* the signed canonical
 * payload (signRecord writes it so), so it is verified as stored, without
 * re-canonicalizing; a reformatted line fails verification, as it should.
 */
export function parseStoredLine(line: string): ParsedLine {
  const at = line.indexOf(RECORD_KEY);
  if (!line.startsWith('{"jws":"') || at < 0 || !line.endsWith('}')) return parseLine(line);
  const jws = line.slice(8, at - 1);
  const recordText = line.slice(at + RECORD_KEY.length, -1);
  const [h, empty, sig] = jws.split('.');
  if (h === undefined || empty !== '' || sig === undefined) return parseLine(line);
  let header: { alg?: unknown; kid?: unknown };
  let record: AuditRecord;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
    record = JSON.parse(recordText) as AuditRecord;
  } catch {
    return parseLine(line);
  }
  if (header.alg !== 'EdDSA' || typeof header.kid !== 'string') return parseLine(line);
  return { record, kid: header.kid, compact: `${h}.${b64(recordText)}.${sig}` };
}

/** Parse a stored line; throws with a reason when it is not a well-formed signed record. */
export function parseLine(line: string): ParsedLine {
  let v: { jws?: unknown; record?: unknown };
  try {
    v = JSON.parse(line) as typeof v;
  } catch {
    throw new Error('not valid JSON');
  }
  if (typeof v.jws !== 'string' || v.record === null || typeof v.record !== 'object') throw new Error('not a signed record ({jws, record})');
  const [h, empty, s] = v.jws.split('.');
  if (h === undefined || empty !== '' || s === undefined) throw new Error('jws is not a detached compact JWS');
  let header: { alg?: unknown; kid?: unknown };
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
  } catch {
    throw new Error('jws header is not JSON');
  }
  if (header.alg !== 'EdDSA' || typeof header.kid !== 'string') throw new Error('jws header must be {alg: EdDSA, kid}');
  return { record: v.record as AuditRecord, kid: header.kid, compact: `${h}.${b64(canonicalJson(v.record))}.${s}` };
}

/** Whether the line's signature verifies with this public key (over the canonical record). */
export function verifyParsed(p: ParsedLine, key: KeyObject): boolean {
  const [h, payload, s] = p.compact.split('.');
  return verify(null, Buffer.from(`${h}.${payload}`), key, Buffer.from(s!, 'base64url'));
}
