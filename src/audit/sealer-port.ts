import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { writeFileAtomic } from '../atomic-file.js';
import { startWorker } from '../worker-thread.js';
import { type FromSealer, Sealer, type SealerTree, serveSealer, type ToSealer } from './sealer.js';
import { HashFile } from './tlog/hash-file.js';
import { type Checkpoint, noteSigner, signCheckpoint } from './tlog/note.js';
import { FileWal, type WriteAheadLog } from './wal.js';

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

/** Signs checkpoints with the log key; `close` stops it. */
export interface CheckpointSigner {
  sign(c: Checkpoint): Promise<string>;
  close(): Promise<void>;
}

/** Signs in this thread (tests, tools). */
function localSigner(k: LogKey): CheckpointSigner {
  const signer = noteSigner(k.origin, k.key);
  return { sign: async (c) => signCheckpoint(c, signer), close: async () => undefined };
}

/**
 * Signs on a worker thread that alone holds the log key (the gateway's event loop never sees it),
 * asked once per checkpoint. A worker that died is started again at the next checkpoint; what it
 * had been asked fails (the commit that asked is retried).
 */
export function workerSigner(k: LogKey): CheckpointSigner {
  let worker: Worker | undefined;
  let next = 1;
  const asked = new Map<number, { resolve: (note: string) => void; reject: (err: Error) => void }>();
  const failAll = (err: Error) => {
    for (const a of asked.values()) a.reject(err);
    asked.clear();
  };
  const started = (): Worker => {
    if (worker !== undefined) return worker;
    const w = startWorker(import.meta.url, 'sign-worker', { origin: k.origin, key: k.key });
    w.unref();
    w.on('message', (m: { id: number; note?: string; error?: string }) => {
      const a = asked.get(m.id);
      asked.delete(m.id);
      if (m.note !== undefined) a?.resolve(m.note);
      else a?.reject(new Error(`checkpoint signing failed: ${m.error ?? 'no note'}`));
    });
    let error: Error | undefined;
    w.on('error', (err) => (error = err));
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(error ?? new Error(`audit signer thread exited with code ${code}`));
    });
    worker = w;
    return w;
  };
  return {
    sign(c) {
      const id = next++;
      return new Promise<string>((resolve, reject) => {
        asked.set(id, { resolve, reject });
        started().postMessage({ id, size: c.size, root: c.root, extensions: c.extensions });
        // Asked and not answered yet: keep the process alive until it is.
        worker?.ref();
      }).finally(() => {
        if (asked.size === 0) worker?.unref();
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      await w?.terminate();
    },
  };
}

export function sealerTree(walDir: string, k: LogKey, signer: CheckpointSigner = localSigner(k)): SealerTree {
  let saving = Promise.resolve();
  return {
    origin: k.origin,
    sign: (c) => signer.sign(c),
    close: () => signer.close(),
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
 * The gateway's sealer: on this thread, writing a FileWal in `dir` (its writes on libuv's thread
 * pool), the log key on a worker thread. Messages go both ways a microtask later (never re-entering
 * the caller).
 */
export function threadSealer(opts: { dir: string; origin: string; key: KeyObject; segmentBytes?: number }): SealerPort {
  const k = { origin: opts.origin, key: opts.key };
  let deliver: (msg: FromSealer) => void = () => undefined;
  const receive = serveSealer(
    new Sealer(sealerTree(opts.dir, k, workerSigner(k)), new FileWal(opts.dir, opts.segmentBytes), (m) =>
      queueMicrotask(() => deliver(m)),
    ),
  );
  return {
    post: (msg) => receive(msg),
    listen(onMessage) {
      deliver = onMessage;
    },
    terminate: () => Promise.resolve(),
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
