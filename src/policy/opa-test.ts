import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PolicyTestReport {
  readonly ok: boolean;
  readonly steps: readonly { name: string; ok: boolean; detail: string }[];
  readonly coverage?: number;
}

async function step(name: string, opa: string, args: string[]): Promise<{ name: string; ok: boolean; detail: string; stdout: string }> {
  try {
    const { stdout, stderr } = await run(opa, args, { maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
    return { name, ok: true, detail: (stderr || '').trim(), stdout };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { name, ok: false, detail: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim(), stdout: e.stdout ?? '' };
  }
}

/** What the policy CI runs: `opa fmt` (no diff), `opa check --strict`, `opa test` with a coverage gate. */
export async function testPolicies(opa: string, dir: string, minCoverage: number): Promise<PolicyTestReport> {
  const fmt = await step('opa fmt', opa, ['fmt', '--fail', '-l', dir]);
  if (fmt.ok && fmt.stdout.trim() !== '') Object.assign(fmt, { ok: false, detail: `not formatted (run opa fmt -w):\n${fmt.stdout.trim()}` });
  const check = await step('opa check --strict', opa, ['check', '--strict', dir]);
  const tests = await step('opa test', opa, ['test', dir, '-v']);
  const cov = await step('opa test --coverage', opa, ['test', dir, '--coverage', '--format', 'json']);
  let coverage: number | undefined;
  try {
    coverage = (JSON.parse(cov.stdout) as { coverage: number }).coverage;
  } catch {
    coverage = undefined;
  }
  const gate = {
    name: `coverage >= ${minCoverage}%`,
    ok: coverage !== undefined && coverage >= minCoverage,
    detail: coverage === undefined ? 'coverage unavailable' : `coverage ${coverage.toFixed(1)}%`,
  };
  const steps = [fmt, check, tests, gate].map(({ name, ok, detail }) => ({ name, ok, detail }));
  return { ok: steps.every((s) => s.ok), steps, ...(coverage !== undefined ? { coverage } : {}) };
}
