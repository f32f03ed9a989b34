import type { KeyObject } from 'node:crypto';
import { startWorker } from '../worker-thread.js';
import type { AuditSigner } from './record.js';
import { type FromSealer, Sealer, serveSealer, type ToSealer } from './sealer.js';
import type { WriteAheadLog } from './wal.js';

/** How the log talks to its sealer: ordered messages both ways. */
export interface SealerPort {
  post(msg: ToSealer): void;
  /** Messages from the sealer in order; `onExit` when it stopped unexpectedly (what it held is lost). */
  listen(onMessage: (msg: FromSealer) => void, onExit: (err: Error) => void): void;
  /** Stop it (after a `close` message was answered, or to abandon it). */
  terminate(): Promise<void>;
}

/** The sealer on its own thread, with the audit key and a FileWal in `dir` (the gateway's). */
export function workerSealer(opts: { dir: string; kid: string; key: KeyObject }): SealerPort {
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
export function localSealer(signer: AuditSigner, wal: WriteAheadLog): SealerPort {
  let deliver: (msg: FromSealer) => void = () => undefined;
  const receive = serveSealer(new Sealer(signer, wal, (m) => setImmediate(() => deliver(m))));
  return {
    post: (msg) => setImmediate(() => receive(msg)),
    listen(onMessage) {
      deliver = onMessage;
    },
    terminate: () => Promise.resolve(),
  };
}
