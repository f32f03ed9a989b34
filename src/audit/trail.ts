import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../clock.js';
import { KeyRing } from '../credentials/keyring.js';
import { type AnchorConfig, Anchors } from './anchors.js';
import { AuditCommitter } from './committer.js';
import { AuditLog } from './log.js';
import { type AuditPusher, PushingAnchors } from './pusher.js';
import { loopSealer, sealerTree, treeHashFile } from './sealer-port.js';
import type { AuditStore } from './store.js';
import { type NoteVerifier, verifierOf } from './tlog/note.js';
import { FileWal, type WriteAheadLog, walFiles } from './wal.js';

export interface AuditTrail {
  readonly log: AuditLog;
  readonly committer: AuditCommitter;
}

export interface AuditTrailOptions {
  /** The WAL's folder: recovery reads back the segments there; the sealer writes new ones after them. */
  readonly walDir: string;
  /** The log's Ed25519 key; it goes to its own thread (which signs the checkpoints) and nowhere else. */
  readonly key: KeyObject;
  /** The log's name: the checkpoints' origin line and the key's name. */
  readonly origin: string;
  readonly everyRecords: number;
  readonly everyMs: number;
  /** Seal into this WAL over walDir instead of a FileWal (tests inject failing ones). */
  readonly wal?: (dir: string) => WriteAheadLog;
  readonly onError?: (err: unknown) => void;
  /** The clock of the log and the committer (record ts, their timers); default the system's. */
  readonly clock?: Clock;
  /** Where each committed checkpoint is also published (config audit.anchors). */
  readonly anchors?: readonly AnchorConfig[];
  /** Where anchor failures are told. */
  readonly warn?: (msg: string) => void;
  /** Multi-replica mode: pushes each commit to this replica's branch of the shared audit repo. */
  readonly pusher?: AuditPusher;
  /** Where a WAL segment is closed (FileWal; default SEGMENT_BYTES). */
  readonly segmentBytes?: number;
}

/** The log's name (checkpoint origin and key name) for the log key `kid`. */
function auditOrigin(kid: string): string {
  return `gitgate.audit/${kid}`;
}

/** The key ring holding the log's Ed25519 key in a data dir. */
const LOG_KEY_RING = 'audit-log';

/** The log key of a data dir (created on first use when `create`), its origin and verifier key. */
export async function logKeyOf(
  dataDir: string,
  create: boolean,
): Promise<{ origin: string; key: KeyObject; verifier: NoteVerifier }> {
  if (!create && !existsSync(path.join(dataDir, 'keys', `${LOG_KEY_RING}.json`)))
    throw new Error(
      `no audit log key in ${dataDir} (keys/${LOG_KEY_RING}.json): has a gateway run with this data dir?`,
    );
  const ring = await KeyRing.load(dataDir, { graceMs: 0, activationMs: 0 }, LOG_KEY_RING, 'EdDSA');
  const k = ring.signing();
  const origin = auditOrigin(k.kid);
  return { origin, key: k.key, verifier: verifierOf(origin, createPublicKey(k.key)) };
}

/** The log (sealing on the event loop, signing on the key's thread) and the committer that moves its WAL into the audit store. Call committer.recover() first. */
export function openAuditTrail(store: AuditStore, opts: AuditTrailOptions): AuditTrail {
  const { wal, origin, key } = opts;
  const log = new AuditLog(
    () =>
      loopSealer(
        sealerTree(opts.walDir, { origin, key }),
        wal !== undefined ? wal(opts.walDir) : new FileWal(opts.walDir, opts.segmentBytes),
      ),
    (stream) => store.tail(stream),
    opts.clock !== undefined ? { clock: opts.clock } : {},
  );
  const committer = new AuditCommitter(log, walFiles(opts.walDir), store, {
    everyRecords: opts.everyRecords,
    everyMs: opts.everyMs,
    treeFile: treeHashFile(opts.walDir),
    ...(opts.pusher !== undefined
      ? {
          anchors: new PushingAnchors(
            opts.anchors ?? [],
            treeHashFile(opts.walDir),
            opts.warn ?? (() => undefined),
            opts.pusher,
          ),
        }
      : opts.anchors !== undefined && opts.anchors.length > 0
        ? { anchors: new Anchors(opts.anchors, treeHashFile(opts.walDir), opts.warn ?? (() => undefined)) }
        : {}),
    ...(opts.onError !== undefined ? { onError: opts.onError } : {}),
    ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
  });
  return { log, committer };
}
