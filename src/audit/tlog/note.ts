import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { decodeBase64Strict } from '../../base64.js';
import { HASH_BYTES, type Hash } from './merkle.js';

/**
 * C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and the
 * C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint) they carry.
 * Everything parsed here is hostile: sizes are bounded and anything not in the
 * exact format is refused.
 */

/** Algorithm byte of an Ed25519 key in key hashes and verifier keys. */
const ALG_ED25519 = 0x01;
/** A note (text + signatures) this long or longer is refused unread. */
export const MAX_NOTE_BYTES = 64 * 1024;
/** At most this many signature lines are looked at. */
const MAX_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 ';

/** A key name: non-empty, printable, no whitespace and no '+'. */
function isKeyName(name: string): boolean {
  return name.length > 0 && name.length <= 256 && /^[\x21-\x2a\x2c-\x7e]+$/.test(name);
}

/** The 4-byte key id: the first bytes of SHA-256(name || "\n" || alg || public key). */
function keyId(name: string, publicKey: Buffer): Buffer {
  return createHash('sha256')
    .update(`${name}\n`)
    .update(Buffer.from([ALG_ED25519]))
    .update(publicKey)
    .digest()
    .subarray(0, 4);
}

export interface NoteVerifier {
  readonly name: string;
  readonly id: Buffer;
  readonly key: KeyObject;
  /** `name+hexid+base64(0x01||pub)`. */
  readonly text: string;
}

export interface NoteSigner {
  readonly name: string;
  readonly verifier: NoteVerifier;
  sign(message: Buffer): Buffer;
}

function rawPublic(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' }) as { kty?: string; crv?: string; x?: string };
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || jwk.x === undefined) throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}

function publicKeyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

export function verifierOf(name: string, publicKey: KeyObject): NoteVerifier {
  if (!isKeyName(name)) throw new Error(`bad key name ${JSON.stringify(name)}`);
  const raw = rawPublic(publicKey);
  const id = keyId(name, raw);
  return {
    name,
    id,
    key: publicKeyFromRaw(raw),
    text: `${name}+${id.toString('hex')}+${Buffer.concat([Buffer.from([ALG_ED25519]), raw]).toString('base64')}`,
  };
}

/** A signer over an Ed25519 private key (the key never leaves it). */
export function noteSigner(name: string, privateKey: KeyObject): NoteSigner {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the log key must be Ed25519');
  const verifier = verifierOf(name, createPublicKey(privateKey));
  return { name, verifier, sign: (message) => sign(null, message, privateKey) };
}

/** Parse a verifier key `name+hexid+base64(0x01||pub)`; throws naming what is wrong. */
export function parseVerifierKey(text: string): NoteVerifier {
  const t = text.trim();
  if (t.length > 1024) throw new Error('verifier key too long');
  const a = t.indexOf('+');
  const b = t.indexOf('+', a + 1);
  if (a < 0 || b < 0) throw new Error('a verifier key is name+hash+key');
  const [name, hex, b64] = [t.slice(0, a), t.slice(a + 1, b), t.slice(b + 1)];
  if (!isKeyName(name)) throw new Error(`bad key name ${JSON.stringify(name)}`);
  if (!/^[0-9a-f]{8}$/.test(hex)) throw new Error('the key hash must be 8 lowercase hex digits');
  const raw = decodeBase64Strict(b64);
  if (raw === undefined || raw.length !== 33 || raw[0] !== ALG_ED25519)
    throw new Error('the key must be base64 of 0x01 followed by a 32-byte Ed25519 public key');
  const pub = raw.subarray(1);
  const id = keyId(name, pub);
  if (id.toString('hex') !== hex) throw new Error('the key hash does not match the name and key');
  return { name, id, key: publicKeyFromRaw(pub), text: t };
}

/** Sign a note: its text (ending in a newline), a blank line, one signature line. */
export function signNote(text: string, signer: NoteSigner): string {
  assertNoteText(text);
  const sig = signer.sign(Buffer.from(text, 'utf8'));
  return `${text}\n${SIG_PREFIX}${signer.name} ${Buffer.concat([signer.verifier.id, sig]).toString('base64')}\n`;
}

function assertNoteText(text: string): void {
  if (!text.endsWith('\n')) throw new Error('a note text ends with a newline');
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x0a) || c === 0x7f) throw new Error('a note text holds no control characters');
  }
  if (text.includes('\n\n')) throw new Error('a note text holds no blank line');
}

export interface OpenedNote {
  readonly text: string;
  /** Names of the given verifiers whose signature verified. */
  readonly verifiedBy: readonly string[];
  /** Signature lines by keys not given (informational; never trusted). */
  readonly unknown: readonly string[];
}

/**
 * Open a signed note: at least one signature must verify with one of the
 * given keys. A signature line by a known key name and id that does not
 * verify fails the whole note (a forgery is not ignored).
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  if (Buffer.byteLength(note) >= MAX_NOTE_BYTES) throw new Error('note too large');
  if (!note.endsWith('\n')) throw new Error('a signed note ends with a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('a signed note has a blank line before its signatures');
  const text = note.slice(0, split + 1);
  assertNoteText(text);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new Error('too many signatures');
  const verifiedBy: string[] = [];
  const unknown: string[] = [];
  const message = Buffer.from(text, 'utf8');
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) throw new Error(`malformed signature line ${JSON.stringify(line.slice(0, 80))}`);
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    const name = rest.slice(0, sp);
    const sig = sp < 0 ? undefined : decodeBase64Strict(rest.slice(sp + 1));
    if (sp < 0 || !isKeyName(name) || sig === undefined || sig.length < 5)
      throw new Error(`malformed signature line ${JSON.stringify(line.slice(0, 80))}`);
    const id = sig.subarray(0, 4);
    const v = verifiers.find((k) => k.name === name && k.id.equals(id));
    if (v === undefined) {
      unknown.push(`${name}+${id.toString('hex')}`);
      continue;
    }
    if (!verify(null, message, v.key, sig.subarray(4)))
      throw new Error(`the signature by ${name}+${id.toString('hex')} does not verify`);
    if (!verifiedBy.includes(name)) verifiedBy.push(name);
  }
  if (verifiedBy.length === 0)
    throw new Error(
      unknown.length > 0 ? `signed only by keys not given: ${unknown.join(', ')}` : 'no signature by a given key',
    );
  return { text, verifiedBy, unknown };
}

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Hash;
  /** Extension lines (rarely used), without their newlines. */
  readonly extensions: readonly string[];
}

export function checkpointText(c: Checkpoint): string {
  return `${c.origin}\n${c.size}\n${c.root.toString('base64')}\n${c.extensions.map((e) => `${e}\n`).join('')}`;
}

/** Parse a checkpoint body (the note text); throws naming what is wrong. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new Error('a checkpoint ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new Error('a checkpoint has an origin, a tree size and a root hash');
  const [origin, size, root, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0 || origin.length > 1024) throw new Error('bad checkpoint origin');
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(size) || !Number.isSafeInteger(Number(size)))
    throw new Error('bad checkpoint tree size');
  const hash = decodeBase64Strict(root);
  if (hash === undefined || hash.length !== HASH_BYTES) throw new Error('bad checkpoint root hash');
  if (extensions.some((e) => e.length === 0)) throw new Error('a checkpoint holds no blank line');
  return { origin, size: Number(size), root: hash, extensions };
}

export interface SignedCheckpoint extends Checkpoint {
  readonly note: string;
  readonly verifiedBy: readonly string[];
  readonly unknown: readonly string[];
}

/** Open a signed checkpoint with the given keys; `origin` (when given) must match. */
export function openCheckpoint(note: string, verifiers: readonly NoteVerifier[], origin?: string): SignedCheckpoint {
  const opened = openNote(note, verifiers);
  const c = parseCheckpoint(opened.text);
  if (origin !== undefined && c.origin !== origin)
    throw new Error(`the checkpoint is of log ${JSON.stringify(c.origin)}, not ${JSON.stringify(origin)}`);
  return { ...c, note, verifiedBy: opened.verifiedBy, unknown: opened.unknown };
}

export function signCheckpoint(c: Checkpoint, signer: NoteSigner): string {
  return signNote(checkpointText(c), signer);
}
