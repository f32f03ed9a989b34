import type { KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { noteSigner, signNote } from './tlog/note.js';

/** The log key's thread: it signs the notes (checkpoints) it is sent, and nothing else sees the key. */
const { origin, key } = workerData as { origin: string; key: KeyObject };
const signer = noteSigner(origin, key);
const port = parentPort!;
port.on('message', ({ id, text }: { id: number; text: string }) => {
  try {
    port.postMessage({ id, note: signNote(text, signer) });
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
