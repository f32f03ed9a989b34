import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * vitest globalSetup: one folder per run where test/setup/policy-cache.ts keeps the bundles it
 * built, by content hash (workers inherit the variable). Per run, so nothing outlives a change
 * to the compiler's inputs that the key does not name.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-test-bundles-'));
  process.env.GITGATE_TEST_BUNDLE_CACHE = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
