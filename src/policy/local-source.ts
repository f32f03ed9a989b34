import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../clock.js';
import { buildPolicyBundle } from './build.js';
import { readBundle } from './bundle.js';
import { instantiate, type PolicyInstance } from './engine.js';

/** Build a policy folder with the pinned opa and load it into a fresh WASM instance (smoke-tested). */
export async function loadPolicyFromDir(opts: {
  opa: string;
  dir: string;
  workDir: string;
  /** Dates the revision's loadedAt; time.now_ns for inputs without a request time. */
  clock?: Clock;
}): Promise<PolicyInstance> {
  const built = await buildPolicyBundle({
    opa: opts.opa,
    srcDir: opts.dir,
    outDir: path.join(opts.workDir, 'policy-build'),
  });
  const bundle = await readBundle(await readFile(built.path));
  return instantiate(bundle, { source: opts.dir }, opts.clock);
}
