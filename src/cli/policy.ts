import path from 'node:path';
import { toolEnv } from '../config/load.js';
import { buildPolicyBundle } from '../policy/build.js';
import { ensureOpa } from '../policy/opa-binary.js';
import { testPolicies } from '../policy/opa-test.js';

export async function policyBuild(opts: { dir: string; out: string }, out: (line: string) => void): Promise<number> {
  const opa = await ensureOpa(out, toolEnv().opaPath);
  const built = await buildPolicyBundle({ opa, srcDir: path.resolve(opts.dir), outDir: path.resolve(opts.out) });
  out(`built ${built.path} (sha256 ${built.digest})`);
  return 0;
}

export async function policyTest(opts: { dir: string; coverage: string }, out: (line: string) => void): Promise<number> {
  const opa = await ensureOpa(out, toolEnv().opaPath);
  const report = await testPolicies(opa, path.resolve(opts.dir), Number(opts.coverage));
  for (const s of report.steps) {
    out(`${s.ok ? 'ok  ' : 'FAIL'} ${s.name}`);
    if (!s.ok && s.detail) out(s.detail.replace(/^/gm, '     '));
  }
  return report.ok ? 0 : 1;
}
