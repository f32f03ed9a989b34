import { Worker } from 'node:worker_threads';

/**
 * Start the worker module `name` (without extension) that sits beside the
 * module `from` (its import.meta.url). Built, the sources are plain .js; run
 * from sources (tsx, vitest, benchmarks) they are .ts, and the worker
 * registers tsx before importing its module.
 */
export function startWorker(from: string, name: string, workerData: unknown): Worker {
  const ts = new URL(from).pathname.endsWith('.ts');
  const url = new URL(`./${name}${ts ? '.ts' : '.js'}`, from);
  return ts
    ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`, {
        eval: true,
        workerData,
      })
    : new Worker(url, { workerData });
}
