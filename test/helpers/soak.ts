/**
 * Long runs (thousands of random requests, repeated SIGKILLs, a hundred commits, a packed
 * install) run in full only in the soak suite (`npm run test:soak`, which `.ci/run` also runs);
 * the main suite runs the same tests at a size that keeps it fast.
 */
export const SOAK = process.env.GITGATE_SOAK === '1';

/** `full` in the soak suite, `quick` in the main suite. */
export const soakSize = (quick: number, full: number): number => (SOAK ? full : quick);
