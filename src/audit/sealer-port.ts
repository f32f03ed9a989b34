import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { startWorker } from '../worker-thread.js';
import { type FromSealer, Sealer, type SealerTree, serveSealer, type ToSealer } from './sealer.js';
import { HashFile } from './tlog/hash-file.js';
import { noteSigner, signCheckpoint } from './tlog/note.js';
import type { WriteAheadLog } from './wal.js';

/** How the log talks to its sealer: ordered messages both ways. */
export interface SealerPort {
  post(msg: ToSealer): void;
  /** Messages from the sealer in order; `onExit` when it stopped unexpectedly (what it held is lost). */
  listen(onMessage: (msg: FromSealer) => void, onExit: (err: Error) => void): void;
  /** Stop it (after a `close` message was answered, or to abandon it). */
  terminate(): Promise<void>;
}

/** Where the log's stored-hash file lives: beside the WAL segments, in the data dir. */
export function treeHashFile(walDir: string): string {
  return path.join(walDir, 'tree.hashes');
}

/** The log key, its name (the checkpoint origin), and the stored-hash file beside the WAL. */
export interface LogKey {
  readonly origin: string;
  readonly key: KeyObject;
}

/** The latest checkpoint the sealer signed (what `gitgate audit checkpoint --data-dir` prints). */
export function latestCheckpointFile(walDir: string): string {
  return path.join(walDir, 'checkpoint');
}

/** The log's tree over the stored-hash file beside the WAL, signing checkpoints with the log key where it runs (the sealer's thread). */
export function sealerTree(walDir: string, k: LogKey): SealerTree {
  const signer = noteSigner(k.origin, k.key);
  let saving = Promise.resolve();
  return {
    origin: k.origin,
    sign: async (c) => signCheckpoint(c, signer),
    open: () => HashFile.open(treeHashFile(walDir)),
    // In order, each replacing the last whole; losing one to a crash loses nothing (recovery signs again).
    saved: (note) => {
      saving = saving.then(() =>
        writeFileAtomic(latestCheckpointFile(walDir), note, { mode: 0o600 }).catch(() => undefined),
      );
    },
  };
}

/**
 * The sealer on its own thread, with the log key and a FileWal in `dir` (the gateway's): the
 * event loop never hashes a line, waits for the disk or holds the key. `lines`: send each durable
 * line back (a log that keeps lines for its committer); `segmentBytes`: where a WAL segment closes.
 */
export function workerSealer(opts: {
  dir: string;
  origin: string;
  key: KeyObject;
  lines?: boolean;
  segmentBytes?: number;
}): SealerPort {
  const worker = startWorker(import.meta.url, 'seal-worker', opts);
  let stopping = false;
  return {
    post: (msg) => worker.postMessage(msg),
    listen(onMessage, onExit) {
      worker.on('message', onMessage);
      let error: Error | undefined;
      worker.on('error', (err) => (error = err));
      worker.on('exit', (code) => {
        if (!stopping) onExit(error ?? new Error(`audit sealer thread exited with code ${code}`));
      });
    },
    async terminate() {
      stopping = true;
      await worker.terminate();
    },
  };
}

/** A sealer in this thread over any WAL (unit tests, and WALs injected by tests), its messages delivered a turn later. */
export function localSealer(tree: SealerTree, wal: WriteAheadLog): SealerPort {
  let deliver: (msg: FromSealer) => void = () => undefined;
  const receive = serveSealer(new Sealer(tree, wal, (m) => setImmediate(() => deliver(m))));
  return {
    post: (msg) => setImmediate(() => receive(msg)),
    listen(onMessage) {
      deliver = onMessage;
    },
    terminate: () => Promise.resolve(),
  };
}
