import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { startWorker } from '../worker-thread.js';
import { type FromSealer, Sealer, type SealerTree, serveSealer, type ToSealer } from './sealer.js';
import { HashFile } from './tlog/hash-file.js';
import { noteSigner } from './tlog/note.js';
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

export function sealerTree(walDir: string, k: LogKey): SealerTree {
  let saving = Promise.resolve();
  return {
    origin: k.origin,
    signer: noteSigner(k.origin, k.key),
    open: () => HashFile.open(treeHashFile(walDir)),
    // In order, each replacing the last whole; losing one to a crash loses nothing (recovery signs again).
    saved: (note) => {
      saving = saving.then(() =>
        writeFileAtomic(latestCheckpointFile(walDir), note, { mode: 0o600 }).catch(() => undefined),
      );
    },
    idle: () => saving,
  };
}

/**
 * The sealer on its own thread, with the log key and a FileWal in `dir` (the gateway's): the
 * event loop never hashes a line, waits for the disk or holds the key. `segmentBytes`: where a
 * WAL segment closes.
 */
export function workerSealer(opts: { dir: string; origin: string; key: KeyObject; segmentBytes?: number }): SealerPort {
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

/** The same sealer in this thread (unit tests, and WALs injected by tests), its messages delivered a turn later. */
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
