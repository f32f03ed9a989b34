import type { KeyObject } from 'node:crypto';
import { createHash, generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import type { AnchorConfig } from '../../src/audit/anchors.js';
import type { AuditEvent } from '../../src/audit/record.js';
import { GitAuditStore } from '../../src/audit/store.js';
import { type NoteVerifier, verifierOf } from '../../src/audit/tlog/note.js';
import { type AuditTrail, logKeyOf, openAuditTrail } from '../../src/audit/trail.js';
import { type VerifyOptions, type VerifyReport, verifyAuditRepo } from '../../src/audit/verify.js';
import type { Clock } from '../../src/clock.js';

/**
 * Verify a repo at `<data dir>/audit` (a gateway's, or openTrail's) with the log key of that data
 * dir, given from outside as an auditor would (`--key`).
 */
export async function verifyRepo(repo: string, opts: Partial<VerifyOptions> = {}): Promise<VerifyReport> {
  return verifyAuditRepo(repo, { keys: [(await logKeyOf(path.dirname(repo), false)).verifier], ...opts });
}

/** A log key (Ed25519), the log's name (checkpoint origin) and its verifier key. */
export interface AuditKey {
  readonly origin: string;
  readonly key: KeyObject;
  readonly verifier: NoteVerifier;
}

export function newAuditKey(name: string): AuditKey {
  const key = generateKeyPairSync('ed25519').privateKey;
  const origin = `gitgate.test/${name}`;
  return { origin, key, verifier: verifierOf(origin, key) };
}

/** The real log (sealing on its worker thread), WAL, store and committer over `root`, as a gateway start builds them. */
export async function openTrail(
  root: string,
  key?: AuditKey,
  opts: {
    clock?: Clock;
    anchors?: readonly AnchorConfig[];
    warn?: (msg: string) => void;
    segmentBytes?: number;
  } = {},
): Promise<AuditTrail & { store: GitAuditStore; key: AuditKey }> {
  // By default the log key of `root` as a data dir (as a gateway keeps it), so a reopen and verifyRepo find it.
  const k = key ?? (await logKeyOf(root, true));
  const store = await GitAuditStore.open(path.join(root, 'audit'), k.verifier.text);
  const trail = openAuditTrail(store, {
    walDir: path.join(root, 'wal'),
    origin: k.origin,
    key: k.key,
    everyRecords: 1_000_000,
    everyMs: 60_000,
    ...opts,
  });
  return { ...trail, store, key: k };
}

/** A decision event as the gateway records one (valid against schemas/audit-record.schema.json). */
export function decisionEvent(exchange: string, sub = 'alice'): AuditEvent {
  const input = {
    identity: { sub, groups: ['eng'], issuer: 'urn:gitgate:dev-issuer' },
    mcp: {
      method: 'tools/call',
      tool: 'echo',
      arguments: { message: exchange },
      protocol_version: '2025-11-25',
      era: 'legacy',
    },
    upstream: { name: 'demo', transport: 'http' },
    request: { id: exchange, time_ns: 0 },
  };
  return {
    type: 'decision',
    exchange,
    caller: { sub },
    upstream: 'demo',
    method: 'tools/call',
    tool: 'echo',
    data: {
      policy: { revision: null, bundle_digest: 'sha256:test' },
      allow: true,
      valid: true,
      reasons: ['test'],
      // As the gateway records it: of the exact JSON the policy evaluated.
      input_sha256: createHash('sha256').update(JSON.stringify(input)).digest('hex'),
      input,
    },
  };
}
