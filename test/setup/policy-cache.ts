import { vi } from 'vitest';

/**
 * Every test file: `buildPolicyBundle` (each gateway start, impact revision, policy build) keeps
 * what it built by the hash of everything opa reads and is told, and hands a copy back for the
 * same inputs instead of running opa again. A failing build is never kept: it runs each time.
 */
vi.mock('../../src/policy/build.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/policy/build.js')>();
  const { cachedBuild } = await import('../helpers/policy-cache.js');
  return { ...real, buildPolicyBundle: cachedBuild(real.buildPolicyBundle) };
});
