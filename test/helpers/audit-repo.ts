import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditCommitter } from '../../src/audit/committer.js';
import { AuditLog } from '../../src/audit/log.js';
import { auditSigner, type AuditEvent, type AuditSigner } from '../../src/audit/record.js';
import { GitAuditStore } from '../../src/audit/store.js';
import { FileWal } from '../../src/audit/wal.js';
import { canonicalJson } from '../../src/canonical-json.js';
import { generateSigningKey, type SigningAlg } from '../../src/credentials/algorithms.js';

export function newSigner(kid: string, alg: SigningAlg = 'ES256'): AuditSigner {
  return auditSigner(kid, generateSigningKey(alg));
}

/** A decision event as the gateway records one (valid against schemas/audit-record.schema.json). */
export function decisionEvent(exchange: string, sub = 'alice'): AuditEvent {
  const input = {
    identity: { sub, groups: ['eng'], issuer: 'urn:gitgate:dev-issuer' },
    mcp: { method: 'tools/call', tool: 'echo', arguments: { message: exchange }, protocol_version: '2025-11-25', era: 'legacy' },
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
      input_sha256: createHash('sha256').update(canonicalJson(input)).digest('hex'),
      input,
    },
  };
}

/** A real audit repo written through the real log, WAL, store and committer. */
export async function buildAuditRepo(streams: Record<string, number>, signer = newSigner('test-key')): Promise<string> {
  const root = mkdtempSync(path.join(tmpdir(), 'gitgate-audit-'));
  const repo = path.join(root, 'audit');
  const store = await GitAuditStore.open(repo, signer);
  const wal = new FileWal(path.join(root, 'wal'));
  const log = new AuditLog(wal, signer, (s) => store.tail(s));
  const committer = new AuditCommitter(log, wal, store, { everyRecords: 1_000_000, everyMs: 60_000 });
  let round = 0;
  // Two commits, so the history has more than one step.
  for (const half of [0, 1]) {
    for (const [stream, n] of Object.entries(streams)) {
      const count = half === 0 ? Math.ceil(n / 2) : Math.floor(n / 2);
      for (let i = 0; i < count; i++) await log.append(stream, decisionEvent(`x${round++}`));
    }
    await committer.commit();
  }
  await wal.close();
  return repo;
}
