import { parentPort, workerData } from 'node:worker_threads';
import { readBundle } from '../policy/bundle.js';
import { instantiate } from '../policy/engine.js';
import { type Anchor, replayPart } from './replay.js';

interface Job {
  readonly auditRepo: string;
  readonly base: Uint8Array;
  readonly head: Uint8Array;
  readonly anchors: [string, Anchor[]][];
  readonly streams: string[];
  readonly since?: string;
}

/** One worker: its own WASM instances of both revisions, its share of the streams. */
const job = workerData as Job;
const [base, head] = await Promise.all([
  instantiate(await readBundle(job.base), { source: 'base' }),
  instantiate(await readBundle(job.head), { source: 'head' }),
]);
const part = replayPart(job.auditRepo, base, head, new Map(job.anchors), {
  streams: job.streams,
  ...(job.since !== undefined ? { since: job.since } : {}),
});
parentPort!.postMessage(part);
