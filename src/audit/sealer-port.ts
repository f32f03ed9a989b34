import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { writeFileAtomic } from '../atomic-file.js';
import { startWorker } from '../worker-thread.js';
import { type FromSealer, Sealer, type SealerTree, serveSealer, type ToSealer } from './sealer.js';
import { HashFile } from './tlog/hash-file.js';
import { noteSigner, signNote } from './tlog/note.js';
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

/** The log key and its name (the checkpoint origin). */
export interface LogKey {
  readonly origin: string;
  readonly key: KeyObject;
}

/** The latest checkpoint the sealer signed (what `gitgate audit checkpoint --data-dir` prints). */
export function latestCheckpointFile(walDir: string): string {
  return path.join(walDir, 'checkpoint');
}

/** Signs note texts with a key; `close` lets it go. */
export interface NoteSigning {
  sign(text: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * The log key on its own thread (sign-worker.ts): the event loop never holds it. The thread is
 * started when the first note is to be signed, and again after it stopped (its pending notes fail:
 * the commit that asked is retried).
 */
export function threadSigning(k: LogKey): NoteSigning {
  let worker: Worker | undefined;
  let nextId = 1;
  const pending = new Map<number, { resolve: (note: string) => void; reject: (err: Error) => void }>();
  const start = (): Worker => {
    const w = startWorker(import.meta.url, 'sign-worker', { origin: k.origin, key: k.key });
    w.unref();
    w.on('message', (m: { id: number; note?: string; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.note !== undefined) p?.resolve(m.note);
      else p?.reject(new Error(`signing the checkpoint failed: ${m.error ?? 'no note'}`));
      if (pending.size === 0) w.unref();
    });
    let error: Error | undefined;
    w.on('error', (err) => (error = err));
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      for (const p of pending.values()) p.reject(error ?? new Error(`the log key's thread exited with code ${code}`));
      pending.clear();
    });
    return w;
  };
  return {
    sign(text) {
      if (worker === undefined) worker = start();
      const w = worker;
      const id = nextId++;
      w.ref();
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.postMessage({ id, text });
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      await w?.terminate();
    },
  };
}

/** The log key in this thread (unit tests). */
export function localSigning(k: LogKey): NoteSigning {
  const signer = noteSigner(k.origin, k.key);
  return { sign: async (text) => signNote(text, signer), close: async () => undefined };
}

/** The log's tree beside the WAL in `walDir`, its checkpoints signed by `signing` (default: on the key's own thread). */
export function sealerTree(walDir: string, k: LogKey, signing: NoteSigning = threadSigning(k)): SealerTree {
  let saving = Promise.resolve();
  return {
    origin: k.origin,
    sign: (text) => signing.sign(text),
    open: () => HashFile.open(treeHashFile(walDir)),
    // In order, each replacing the last whole; losing one to a crash loses nothing (recovery signs again).
    saved: (note) => {
      saving = saving.then(() =>
        writeFileAtomic(latestCheckpointFile(walDir), note, { mode: 0o600 }).catch(() => undefined),
      );
    },
    idle: () => saving,
    close: () => signing.close(),
  };
}

/**
 * The sealer on the event loop, writing `wal` (a FileWal: each group one O_DSYNC write on the
 * thread pool), its messages handled in order a microtask later.
 */
export function loopSealer(tree: SealerTree, wal: WriteAheadLog): SealerPort {
  let deliver: (msg: FromSealer) => void = () => undefined;
  const receive = serveSealer(new Sealer(tree, wal, (m) => deliver(m)));
  return {
    post: (msg) => receive(msg),
    listen(onMessage) {
      deliver = onMessage;
    },
    terminate: async () => {
      await tree.close?.();
    },
  };
}
