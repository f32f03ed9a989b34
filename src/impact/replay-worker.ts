import { parentPort, workerData } from 'node:worker_threads';
import { readBundle } from '../policy/bundle.js';
import { instantiate } from '../policy/engine.js';
import { type Anchor, mergeParts, replayPart } from './replay.js';

interface Job {
  readonly base: Uint8Array;
  readonly head: Uint8Array;
  /** Streams of one or more repos (one per replica), each read against its own repo's anchors. */
  readonly jobs: { readonly auditRepo: string; readonly anchors: [string, Anchor[]][]; readonly streams: string[] }[];
  readonly since?: string;
}

/** One worker: its own WASM instances of both revisions, its share of the streams. */
const job = workerData as Job;
const [base, head] = await Promise.all([
  instantiate(await readBundle(job.base), { source: 'base' }),
  instantiate(await readBundle(job.head), { source: 'head' }),
]);
const parts = job.jobs.map((j) =>
  replayPart(j.auditRepo, base, head, new Map(j.anchors), {
    streams: j.streams,
    ...(job.since !== undefined ? { since: job.since } : {}),
  }),
);
parentPort!.postMessage(mergeParts(parts));
