import { decodeBase64Strict } from '../../base64.js';
import { HASH_BYTES, type Hash, leafHash, verifyInclusion } from './merkle.js';
import { type NoteVerifier, openCheckpoint, type SignedCheckpoint } from './note.js';

/** What `gitgate audit prove` writes: one record, its inclusion proof, and the signed checkpoint it is proved against. */
export interface ProofBundle {
  readonly format: typeof BUNDLE_FORMAT;
  /** The record's line exactly as stored (its leaf data). */
  readonly record: string;
  readonly leaf: number;
  /** Base64 hashes, leaf to root (RFC 9162 §2.1.3). */
  readonly inclusion: readonly string[];
  /** A C2SP signed checkpoint note. */
  readonly checkpoint: string;
}

const BUNDLE_FORMAT = 'gitgate-audit-proof/1';
/** A bundle file this large or larger is refused unread. */
export const MAX_BUNDLE_BYTES = 4 << 20;

export function makeBundle(record: string, leaf: number, inclusion: readonly Hash[], checkpoint: string): ProofBundle {
  return { format: BUNDLE_FORMAT, record, leaf, inclusion: inclusion.map((h) => h.toString('base64')), checkpoint };
}

export interface ProvedRecord {
  readonly record: unknown;
  readonly leaf: number;
  readonly checkpoint: SignedCheckpoint;
}

/**
 * Check a bundle offline: the checkpoint is signed by one of the given keys, and the record is
 * leaf `leaf` of the tree that checkpoint names. Throws naming what is wrong.
 */
export function verifyBundle(text: string, verifiers: readonly NoteVerifier[]): ProvedRecord {
  if (Buffer.byteLength(text) >= MAX_BUNDLE_BYTES) throw new Error('proof bundle too large');
  let b: Partial<ProofBundle>;
  try {
    b = JSON.parse(text) as Partial<ProofBundle>;
  } catch {
    throw new Error('the proof bundle is not JSON');
  }
  if (b === null || typeof b !== 'object' || b.format !== BUNDLE_FORMAT)
    throw new Error(`not a proof bundle (format ${BUNDLE_FORMAT})`);
  if (typeof b.record !== 'string' || typeof b.checkpoint !== 'string' || !Array.isArray(b.inclusion))
    throw new Error('the proof bundle needs record, inclusion and checkpoint');
  if (typeof b.leaf !== 'number' || !Number.isSafeInteger(b.leaf) || b.leaf < 0)
    throw new Error('the proof bundle has no valid leaf index');
  if (b.inclusion.length > 64) throw new Error('the inclusion proof is too long');
  const path = b.inclusion.map((s) => {
    const h = typeof s === 'string' ? decodeBase64Strict(s) : undefined;
    if (h === undefined || h.length !== HASH_BYTES)
      throw new Error('the inclusion proof holds a hash that is not 32 bytes of base64');
    return h;
  });
  const checkpoint = (() => {
    try {
      return openCheckpoint(b.checkpoint, verifiers);
    } catch (err) {
      throw new Error(`checkpoint: ${(err as Error).message}`);
    }
  })();
  let record: unknown;
  try {
    record = JSON.parse(b.record);
  } catch {
    throw new Error('the record is not JSON');
  }
  const leafOf = (record as { leaf?: unknown } | null)?.leaf;
  if (leafOf !== b.leaf) throw new Error(`the record says leaf ${String(leafOf)}, the bundle ${b.leaf}`);
  if (!verifyInclusion(b.leaf, checkpoint.size, leafHash(b.record), path, checkpoint.root))
    throw new Error(`the inclusion proof does not put this record at leaf ${b.leaf} of the tree of ${checkpoint.size}`);
  return { record, leaf: b.leaf, checkpoint };
}
