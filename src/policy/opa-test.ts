import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PolicyTestReport {
  readonly ok: boolean;
  readonly steps: readonly { name: string; ok: boolean; detail: string }[];
  readonly coverage?: number;
}

async function step(
  name: string,
  opa: string,
  args: string[],
): Promise<{ name: string; ok: boolean; detail: string; stdout: string }> {
  try {
    const { stdout, stderr } = await run(opa, args, { maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
    return { name, ok: true, detail: (stderr || '').trim(), stdout };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { name, ok: false, detail: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim(), stdout: e.stdout ?? '' };
  }
}

interface OpaCoverage {
  files?: Record<
    string,
    {
      covered_lines?: number;
      not_covered_lines?: number;
      not_covered?: { start: { row: number }; end: { row: number } }[];
    }
  >;
}

/** "3, 7-9, 12" for a sorted list of line numbers. */
function lineRanges(rows: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < rows.length; ) {
    let j = i;
    while (j + 1 < rows.length && rows[j + 1] === rows[j]! + 1) j++;
    out.push(rows[i] === rows[j] ? String(rows[i]) : `${rows[i]}-${rows[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/**
 * Coverage of the policy itself: `opa test --coverage` also counts the
 * `_test.rego` files (always covered by running them), which inflates the
 * figure; they are left out here. Returns the uncovered lines of each file.
 */
export function policyCoverage(
  report: OpaCoverage,
  dir: string,
): { percent: number; covered: number; notCovered: number; uncovered: { file: string; lines: string }[] } {
  let covered = 0;
  let notCovered = 0;
  const uncovered: { file: string; lines: string }[] = [];
  for (const [file, f] of Object.entries(report.files ?? {})) {
    if (file.endsWith('_test.rego')) continue;
    covered += f.covered_lines ?? 0;
    notCovered += f.not_covered_lines ?? 0;
    const rows = new Set<number>();
    for (const r of f.not_covered ?? []) for (let row = r.start.row; row <= r.end.row; row++) rows.add(row);
    if (rows.size > 0)
      uncovered.push({
        file: path.relative(dir, path.resolve(file)) || file,
        lines: lineRanges([...rows].sort((a, b) => a - b)),
      });
  }
  const total = covered + notCovered;
  return {
    percent: total === 0 ? 100 : (covered / total) * 100,
    covered,
    notCovered,
    uncovered: uncovered.sort((a, b) => a.file.localeCompare(b.file)),
  };
}

/** What the policy CI runs: `opa fmt` (no diff), `opa check --strict`, `opa test` with a coverage gate. */
export async function testPolicies(opa: string, dir: string, minCoverage: number): Promise<PolicyTestReport> {
  const fmt = await step('opa fmt', opa, ['fmt', '--fail', '-l', dir]);
  // --fail exits non-zero on a diff; either way the listed files are the ones to format.
  if (fmt.stdout.trim() !== '')
    Object.assign(fmt, { ok: false, detail: `not formatted (run: opa fmt -w ${dir}):\n${fmt.stdout.trim()}` });
  // The CI-built bundle.tar.gz sits next to its sources (policy build's default output): opa
  // would load it as a second copy of the policy and its data, and fail on the merge.
  const ignore = ['--ignore', 'bundle.tar.gz'];
  const check = await step('opa check --strict', opa, ['check', '--strict', ...ignore, dir]);
  const tests = await step('opa test', opa, ['test', ...ignore, dir, '-v']);
  // opa passes a folder without a single test: so that an empty or mistyped --dir does not pass silently, that fails.
  if (tests.ok && !/: PASS \(/.test(tests.stdout))
    Object.assign(tests, {
      ok: false,
      detail: `no test ran in ${dir}: add *_test.rego files with test_ rules (is --dir the policy folder?)`,
    });
  const cov = await step('opa test --coverage', opa, ['test', ...ignore, dir, '--coverage', '--format', 'json']);
  let coverage: ReturnType<typeof policyCoverage> | undefined;
  try {
    coverage = policyCoverage(JSON.parse(cov.stdout) as OpaCoverage, dir);
  } catch {
    coverage = undefined;
  }
  const none = coverage !== undefined && coverage.covered + coverage.notCovered === 0;
  const ok = coverage !== undefined && !none && coverage.percent >= minCoverage;
  const gate = {
    name: `coverage >= ${minCoverage}%`,
    ok,
    detail:
      coverage === undefined
        ? `coverage unavailable: ${cov.detail || 'opa test --coverage printed no report'}`
        : none
          ? `no policy rules in ${dir} (only tests, data or nothing): is --dir the policy folder?`
          : [
              `coverage ${coverage.percent.toFixed(1)}% (${coverage.covered} of ${coverage.covered + coverage.notCovered} policy lines; _test.rego files not counted)`,
              ...(ok || coverage.uncovered.length === 0
                ? []
                : [
                    'not covered by any test (add tests that reach them, or remove them):',
                    ...coverage.uncovered.map((u) => `  ${u.file}: ${u.lines}`),
                  ]),
            ].join('\n'),
  };
  const steps = [fmt, check, tests, gate].map(({ name, ok, detail }) => ({ name, ok, detail }));
  return { ok: steps.every((s) => s.ok), steps, ...(coverage !== undefined ? { coverage: coverage.percent } : {}) };
}
