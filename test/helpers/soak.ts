/**
 * Long runs (thousands of random requests, repeated SIGKILLs, a hundred commits, a packed
 * install) run in full only in the soak suite (`npm run test:soak`, which `.ci/run` also runs);
 * the main suite runs the same tests at a size that keeps it fast.
 */
export const SOAK = process.env.GITGATE_SOAK === '1';

/** `full` in the soak suite, `quick` in the main suite. */
export const soakSize = (quick: number, full: number): number => (SOAK ? full : quick);

/**
 * The seed for a test's random inputs: `GITGATE_TEST_SEED` when set; otherwise a fixed seed in
 * the main suite (so a red CI run is reproducible as is) and a fresh one in the soak suite (so
 * the long runs keep exploring). Printed with the name, so any run can be replayed.
 */
export function testSeed(name: string): number {
  const env = process.env.GITGATE_TEST_SEED;
  const seed = env !== undefined && env !== '' ? Number(env) : SOAK ? Math.floor(Math.random() * 2 ** 31) : 20_261_201;
  console.log(`${name}: seed ${seed} (replay with GITGATE_TEST_SEED=${seed})`);
  return seed;
}
