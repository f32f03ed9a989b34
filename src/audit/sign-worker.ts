import type { KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { noteSigner, signCheckpoint } from './tlog/note.js';

/** The log key's thread: it signs checkpoints (tree size + root) and nothing else. */
const { origin, key } = workerData as { origin: string; key: KeyObject };
const signer = noteSigner(origin, key);
const port = parentPort!;
port.on('message', (m: { id: number; size: number; root: Uint8Array; extensions: string[] }) => {
  try {
    const note = signCheckpoint({ origin, size: m.size, root: Buffer.from(m.root), extensions: m.extensions }, signer);
    port.postMessage({ id: m.id, note });
  } catch (err) {
    port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
});
