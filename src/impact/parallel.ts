import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { chains } from '../audit/reader.js';
import { CHECKPOINT_STREAM } from '../audit/store.js';
import { startWorker } from '../worker-thread.js';
import { anchors, finish, type ImpactReport, mergeParts, type PartialReport } from './replay.js';

/**
 * Replay on every core: streams are split by size across worker threads, each
 * with its own WASM instances of both revisions; partial reports are merged.
 */
export async function replayImpactParallel(
  auditRepo: string,
  base: Uint8Array,
  head: Uint8Array,
  opts: { since?: string; workers?: number } = {},
): Promise<ImpactReport> {
  const n = Math.max(1, opts.workers ?? availableParallelism());
  const sized = [...chains(auditRepo)]
    .filter(([s]) => s !== CHECKPOINT_STREAM)
    .map(([stream, files]) => ({ stream, bytes: files.reduce((a, f) => a + statSync(f).size, 0) }))
    .sort((a, b) => b.bytes - a.bytes);
  const shares: { streams: string[]; bytes: number }[] = Array.from({ length: n }, () => ({ streams: [], bytes: 0 }));
  for (const s of sized) {
    const least = shares.reduce((m, x) => (x.bytes < m.bytes ? x : m));
    least.streams.push(s.stream);
    least.bytes += s.bytes;
  }
  const anchored = [...anchors(auditRepo)];
  const parts = await Promise.all(
    shares
      .filter((s) => s.streams.length > 0)
      .map(
        (s) =>
          new Promise<PartialReport>((resolve, reject) => {
            const workerData = {
              auditRepo,
              base,
              head,
              anchors: anchored,
              streams: s.streams,
              ...(opts.since !== undefined ? { since: opts.since } : {}),
            };
            const w = startWorker(import.meta.url, 'replay-worker', workerData);
            w.once('message', (m: PartialReport) => resolve(m));
            w.once('error', reject);
            w.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`impact worker exited with ${code}`))));
          }),
      ),
  );
  return finish(mergeParts(parts));
}
