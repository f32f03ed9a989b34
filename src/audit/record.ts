import * as crypto from 'node:crypto';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { algOfKey, isSigningAlg, jwsSign, jwsVerify, type SigningAlg } from '../credentials/algorithms.js';
import { leafHash } from './tlog/merkle.js';

export type AuditEventType =
  | 'session.open'
  | 'session.close'
  | 'decision'
  | 'response'
  | 'message'
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
  /** 2: a leaf of the log's Merkle tree (this format); 1: a JWS-signed line of the old format (read-only). */
  readonly v: 1 | 2;
  /** The record's index in the log's Merkle tree (v2). */
  readonly leaf?: number;
  readonly stream: string;
  readonly seq: number;
  readonly ts: string;
  /** sha256 (hex) of the previous line of this stream, exactly as stored; null for seq 0. */
  readonly prev: string | null;
}

/** One-method signer (the audit key never leaves it). */
export interface AuditSigner {
  readonly kid: string;
  readonly alg: SigningAlg;
  sign(data: Buffer): Buffer;
  /** The public key, to publish as keys/<kid>.jwk. */
  publicJwk(): Record<string, unknown>;
}

/** A signer over an Ed25519 (EdDSA) or P-256 (ES256) private key. */
export function auditSigner(kid: string, key: KeyObject): AuditSigner {
  const alg = algOfKey(key);
  const pub = createPublicKey(key).export({ format: 'jwk' }) as Record<string, unknown>;
  return {
    kid,
    alg,
    sign: (data) => jwsSign(alg, key, data),
    publicJwk: () => ({ ...pub, kid, alg, use: 'sig' }),
  };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** The protected header of a signer's JWS, encoded once per key. */
const headers = new WeakMap<AuditSigner, string>();

/**
 * The stored form of a record: one JSON line holding the record and a JWS
 * with detached payload (RFC 7515 appendix F) whose payload is the record's
 * JSON exactly as stored in that line. The signature covers those bytes, as
 * the next record's `prev` covers the whole line: nothing is re-serialized to
 * verify, so no canonical form is needed. Keys are written in a fixed order
 * (v, stream, seq, ts, prev, type, then the event's own).
 */
export function signRecord(signer: AuditSigner, record: AuditRecord): string {
  const { stream, seq, ts, prev, ...event } = record;
  const parts = recordParts(stream, seq, ts, event);
  const v1 = `{"v":1${parts.head.slice('{"v":2'.length)},"prev":${prev === null ? 'null' : JSON.stringify(prev)}${parts.rest}`;
  return sealRecord(signer, v1);
}

/** A record's JSON without its `prev`: what the log knows before the sealer chains it. */
export interface RecordParts {
  /** `{"v":1,"stream":…,"seq":…,"ts":"…"` */
  readonly head: string;
  /** `,"type":…}`: the event's own fields, after `prev`. */
  readonly rest: string;
}

/**
 * A member of `data` already serialized: spliced in as its last member, so a
 * payload the gateway already holds as JSON (the policy input it evaluated,
 * the result it relays) is not serialized again.
 */
export interface RawMember {
  readonly key: string;
  readonly json: string;
}

export function recordParts(
  stream: string,
  seq: number,
  ts: string,
  event: Omit<AuditEvent, 'ts'> & { readonly v?: 1 | 2; readonly ts?: string; readonly leaf?: number },
  raw?: RawMember,
): RecordParts {
  const { v: _v, ts: _ts, leaf: _leaf, type, data, ...own } = event;
  const head = `{"v":2,"stream":${JSON.stringify(stream)},"seq":${seq},"ts":${JSON.stringify(ts)}`;
  const fields = JSON.stringify({ type, ...own });
  let dataText = data === undefined ? undefined : JSON.stringify(data);
  if (raw !== undefined) {
    const member = `${JSON.stringify(raw.key)}:${raw.json}`;
    dataText = dataText === undefined || dataText === '{}' ? `{${member}}` : `${dataText.slice(0, -1)},${member}}`;
  }
  // `data` goes last: the event's own fields, then what it says.
  const rest = dataText === undefined ? fields.slice(1) : `${fields.slice(1, -1)},"data":${dataText}}`;
  return { head, rest: `,${rest}` };
}

/**
 * The record's line (v2): its JSON with its leaf index and `prev` in place. The line's
 * exact bytes are the record's leaf in the log's Merkle tree; `prev` is the leaf hash
 * (hex) of the stream's record before it, null at seq 0.
 */
export function recordText(parts: RecordParts, prev: string | null, leaf: number): string {
  return `${parts.head},"leaf":${leaf},"prev":${prev === null ? 'null' : JSON.stringify(prev)}${parts.rest}`;
}

/** The leaf hash (hex) of a stored line: SHA-256(0x00 || line), RFC 6962. */
export function leafHashHex(line: string): string {
  return leafHash(line).toString('hex');
}

/** The start of a v2 line, up to its prev (keys in the order recordParts and recordText write them). */
const HEAD_V2 =
  /^\{"v":2,"stream":("(?:[^"\\]|\\.)*"),"seq":(0|[1-9]\d{0,15}),"ts":"([^"\\]*)","leaf":(0|[1-9]\d{0,15}),"prev":(null|"[0-9a-f]{64}")[,}]/;

/** Where a v2 line says it belongs: stream, seq, ts, leaf and prev, read from its first bytes. */
export interface LeafHead extends LineHead {
  readonly leaf: number;
}

/** A line head's stream: its JSON string literal decoded, or undefined when it is not one. */
function streamName(literal: string): string | undefined {
  try {
    const stream: unknown = JSON.parse(literal);
    return typeof stream === 'string' ? stream : undefined;
  } catch {
    return undefined;
  }
}

/** The head of a v2 record line, or undefined when the line does not start as gitgate writes them. */
export function leafHead(line: string): LeafHead | undefined {
  const m = HEAD_V2.exec(line);
  if (m === null) return undefined;
  const stream = streamName(m[1]!);
  const seq = Number(m[2]);
  const leaf = Number(m[4]);
  if (stream === undefined || !Number.isSafeInteger(seq) || !Number.isSafeInteger(leaf)) return undefined;
  return { stream, seq, ts: m[3]!, leaf, prev: m[5] === 'null' ? null : m[5]!.slice(1, -1) };
}

/** The signed line of a record's exact JSON text. */
function sealRecord(signer: AuditSigner, text: string): string {
  let protectedHeader = headers.get(signer);
  if (protectedHeader === undefined) {
    protectedHeader = b64(JSON.stringify({ alg: signer.alg, kid: signer.kid }));
    headers.set(signer, protectedHeader);
  }
  const signature = b64(signer.sign(Buffer.from(`${protectedHeader}.${b64(text)}`)));
  return `{"jws":"${protectedHeader}..${signature}","record":${text}}`;
}

/** SHA-256 (hex) of bytes, or of a string's UTF-8 bytes; one-shot where Node has crypto.hash (20.12+). */
export const sha256Hex: (data: string | Buffer) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text)
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

export function hashLine(line: string): string {
  return sha256Hex(line);
}

/** Where a stored line says it belongs: its record's stream, seq and prev (the fields it starts with). */
export interface LineHead {
  readonly stream: string;
  readonly seq: number;
  readonly ts: string;
  readonly prev: string | null;
}

/** The stored layout's start, up to the record's prev (keys in the order recordParts writes them). */
const HEAD =
  /^\{"jws":"[A-Za-z0-9_-]*\.\.[A-Za-z0-9_-]*","record":\{"v":1,"stream":("(?:[^"\\]|\\.)*"),"seq":(0|[1-9]\d{0,15}),"ts":"([^"\\]*)","prev":(null|"[0-9a-f]{64}")[,}]/;

/**
 * The stream, seq and prev a stored line holds, read from its first bytes
 * without parsing the whole record; undefined when the line does not start
 * as gitgate writes lines. What the WAL and the store trust about a line.
 */
export function lineHead(line: string): LineHead | undefined {
  const m = HEAD.exec(line);
  if (m === null) return undefined;
  const stream = streamName(m[1]!);
  const seq = Number(m[2]);
  if (stream === undefined || !Number.isSafeInteger(seq)) return undefined;
  return { stream, seq, ts: m[3]!, prev: m[4] === 'null' ? null : m[4]!.slice(1, -1) };
}

export interface ParsedLine {
  readonly record: AuditRecord;
  readonly kid: string;
  readonly alg: SigningAlg;
  /** The JWS in compact form with its payload attached (verifiable by any JOSE library). */
  readonly compact: string;
}

const PREFIX = '{"jws":"';
const RECORD_KEY = '","record":';

/**
 * Parse a stored line; throws with a reason when it is not a signed record in
 * the stored layout `{"jws":"<header>..<signature>","record":<record JSON>}`.
 * The record's exact text is the JWS payload, so a line reformatted in any
 * way fails verification, as it should.
 */
export function parseLine(line: string): ParsedLine {
  const end = line.indexOf(RECORD_KEY);
  if (!line.startsWith(PREFIX) || end < 0 || !line.endsWith('}')) {
    try {
      JSON.parse(line);
    } catch {
      throw new Error('not valid JSON');
    }
    throw new Error('not a signed record in the stored layout {"jws":"…","record":{…}}');
  }
  const jws = line.slice(PREFIX.length, end);
  const text = line.slice(end + RECORD_KEY.length, -1);
  const [h, empty, sig, extra] = jws.split('.');
  if (h === undefined || empty !== '' || sig === undefined || extra !== undefined)
    throw new Error('jws is not a detached compact JWS');
  let header: { alg?: unknown; kid?: unknown };
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
  } catch {
    throw new Error('jws header is not JSON');
  }
  if (!isSigningAlg(header.alg) || typeof header.kid !== 'string')
    throw new Error('jws header must be {alg: EdDSA or ES256, kid}');
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record))
    throw new Error('record is not a JSON object');
  const alg = header.alg;
  const kid = header.kid;
  return {
    record: record as AuditRecord,
    kid,
    alg,
    // Built when asked for: bulk readers that trust a record through its hash chain never need it.
    get compact() {
      return `${h}.${b64(text)}.${sig}`;
    },
  };
}

/** Whether the line's signature verifies with this public key (over the record as stored). */
export function verifyParsed(p: ParsedLine, key: KeyObject): boolean {
  const [h, payload, sig] = p.compact.split('.');
  return jwsVerify(p.alg, key, Buffer.from(`${h}.${payload}`), Buffer.from(sig!, 'base64url'));
}
