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
 * the main suite (so a red CI run is reproducible as is) and, in the soak suite, one drawn from
 * the UTC day (so the long runs explore new inputs every day, while every run of one day, a local
 * one and CI's, replays the same). Printed with the name, so any run can be replayed.
 */
export function testSeed(name: string): number {
  const env = process.env.GITGATE_TEST_SEED;
  const seed = env !== undefined && env !== '' ? Number(env) : SOAK ? daySeed() : 20_261_201;
  console.log(`${name}: seed ${seed} (replay with GITGATE_TEST_SEED=${seed})`);
  return seed;
}

/** The UTC day as a number (20261202): a seed that changes daily and nothing else. */
function daySeed(): number {
  return Number(new Date().toISOString().slice(0, 10).replaceAll('-', ''));
}
