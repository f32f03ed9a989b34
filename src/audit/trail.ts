import type { KeyObject } from 'node:crypto';
import { AuditCommitter } from './committer.js';
import { AuditLog } from './log.js';
import { auditSigner } from './record.js';
import { localSealer, workerSealer } from './sealer-port.js';
import type { AuditStore } from './store.js';
import { type WriteAheadLog, walFiles } from './wal.js';

export interface AuditTrail {
  readonly log: AuditLog;
  readonly committer: AuditCommitter;
}

export interface AuditTrailOptions {
  /** The WAL's folder: recovery reads back the segments there; the sealer writes new ones after them. */
  readonly walDir: string;
  /** The audit signing key; it goes to the sealer's thread and nowhere else. */
  readonly kid: string;
  readonly key: KeyObject;
  readonly everyRecords: number;
  readonly everyMs: number;
  /** Seal on this thread into this WAL over walDir instead (tests inject failing ones). */
  readonly wal?: (dir: string) => WriteAheadLog;
  readonly onError?: (err: unknown) => void;
  /** The log's clock (tests); default the system's. */
  readonly now?: () => Date;
}

/** The log (sealing on a worker thread) and the committer that moves its WAL into the audit store. Call committer.recover() first. */
export function openAuditTrail(store: AuditStore, opts: AuditTrailOptions): AuditTrail {
  const { wal, kid, key } = opts;
  const log = new AuditLog(
    () =>
      wal !== undefined
        ? localSealer(auditSigner(kid, key), wal(opts.walDir))
        : workerSealer({ dir: opts.walDir, kid, key }),
    (stream) => store.tail(stream),
    opts.now !== undefined ? { now: opts.now } : {},
  );
  const committer = new AuditCommitter(log, walFiles(opts.walDir), store, {
    everyRecords: opts.everyRecords,
    everyMs: opts.everyMs,
    ...(opts.onError !== undefined ? { onError: opts.onError } : {}),
  });
  return { log, committer };
}
