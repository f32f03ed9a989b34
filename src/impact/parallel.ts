import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { chains } from '../audit/reader.js';
import { CHECKPOINT_STREAM } from '../audit/store.js';
import { startWorker } from '../worker-thread.js';
import { type Anchor, anchors, finish, type ImpactReport, mergeParts, type PartialReport } from './replay.js';

/**
 * Replay on every core: streams are split by size across worker threads, each
 * with its own WASM instances of both revisions; partial reports are merged.
 * Several repos (one per replica, each its own log) are replayed together: each
 * stream is read against its own repo's anchors, and one report covers them all.
 */
export async function replayImpactParallel(
  auditRepos: string | readonly string[],
  base: Uint8Array,
  head: Uint8Array,
  opts: { since?: string; workers?: number } = {},
): Promise<ImpactReport> {
  const repos = typeof auditRepos === 'string' ? [auditRepos] : auditRepos;
  const n = Math.max(1, opts.workers ?? availableParallelism());
  const sized = repos
    .flatMap((repo) =>
      [...chains(repo)]
        .filter(([s]) => s !== CHECKPOINT_STREAM)
        .map(([stream, files]) => ({ repo, stream, bytes: files.reduce((a, f) => a + statSync(f).size, 0) })),
    )
    .sort((a, b) => b.bytes - a.bytes);
  // One share per worker, split by repo inside it (a job reads one repo).
  const shares: { jobs: Map<string, string[]>; bytes: number }[] = Array.from({ length: n }, () => ({
    jobs: new Map(),
    bytes: 0,
  }));
  for (const s of sized) {
    const least = shares.reduce((m, x) => (x.bytes < m.bytes ? x : m));
    (least.jobs.get(s.repo) ?? least.jobs.set(s.repo, []).get(s.repo)!).push(s.stream);
    least.bytes += s.bytes;
  }
  const anchored = new Map<string, [string, Anchor[]][]>(repos.map((r) => [r, [...anchors(r)]]));
  const parts = await Promise.all(
    shares
      .filter((s) => s.jobs.size > 0)
      .map(
        (s) =>
          new Promise<PartialReport>((resolve, reject) => {
            const workerData = {
              base,
              head,
              jobs: [...s.jobs].map(([auditRepo, streams]) => ({
                auditRepo,
                anchors: anchored.get(auditRepo) ?? [],
                streams,
              })),
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
