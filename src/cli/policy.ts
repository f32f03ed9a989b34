import { rmSync } from 'node:fs';
import path from 'node:path';
import { systemClock } from '../clock.js';
import { toolEnv } from '../config/load.js';
import { gitText } from '../git/run.js';
import { MAX_ROUTES_BYTES, ROUTES_FILE, sourcesDigest } from '../gitsync/sources-digest.js';
import { buildPolicyBundle } from '../policy/build.js';
import { ensureOpa } from '../policy/opa-binary.js';
import { testPolicies } from '../policy/opa-test.js';
import { lexists, readRepoFile } from '../repo-file.js';

/**
 * The routes file a gateway reads beside the policy folder: `gitgate.routes.yaml` at the root of
 * the git work tree holding it (or `given`); undefined when there is none.
 */
async function routesFileOf(src: string, given: string | undefined): Promise<string | undefined> {
  if (given !== undefined) return path.resolve(given);
  const top = (await gitText(src, ['rev-parse', '--show-toplevel']).catch(() => '')).trim();
  if (top === '') return undefined;
  const file = path.join(top, ROUTES_FILE);
  return lexists(file) ? file : undefined;
}

export async function policyBuild(
  opts: { dir: string; out?: string; signKey?: string; signingAlg?: string; routes?: string },
  out: (line: string) => void,
): Promise<number> {
  const env = toolEnv();
  const opa = await ensureOpa(out, env.opaPath);
  const src = path.resolve(opts.dir);
  // The revision names the sources it was built from, and the routes beside them, so a gateway
  // can refuse a stale bundle (and a signature covers the routes).
  const routesFile = await routesFileOf(src, opts.routes);
  const revision = sourcesDigest(
    src,
    routesFile === undefined ? undefined : readRepoFile(routesFile, MAX_ROUTES_BYTES, ROUTES_FILE),
  );
  const outDir = path.resolve(opts.out ?? src);
  const built = await buildPolicyBundle({
    opa,
    srcDir: src,
    outDir,
    revision,
    ...(opts.signKey !== undefined
      ? {
          signingKey: path.resolve(opts.signKey),
          signingAlg: opts.signingAlg ?? 'RS256',
          // A gateway refuses a bundle signed before the one it serves (a rollback).
          signedAt: env.sourceDateEpoch ?? Math.floor(systemClock.now() / 1000),
        }
      : {}),
  });
  rmSync(path.join(outDir, 'capabilities.json'), { force: true });
  rmSync(path.join(outDir, 'claims.json'), { force: true });
  out(
    `built ${built.path} (sha256 ${built.digest}, revision ${revision}${routesFile !== undefined ? `, covering ${path.relative(process.cwd(), routesFile) || routesFile}` : ''}${opts.signKey !== undefined ? ', signed' : ''})`,
  );
  return 0;
}

/** `gitgate policy status`: what a running gateway serves, from its /readyz. */
export async function policyStatus(opts: { url: string }, out: (line: string) => void): Promise<number> {
  const res = await fetch(`${opts.url.replace(/\/+$/, '')}/readyz`).catch((err: unknown) => {
    throw new Error(`cannot reach ${opts.url}: ${(err as Error).message}`);
  });
  const r = (await res.json()) as {
    ready: boolean;
    policy: { revision: string | null; bundle_digest: string; source: string; loaded_at: string } | null;
    last_policy_error: string | null;
    policy_sync: {
      commit?: string;
      syncedAt?: string;
      lastError?: { commit?: string; message: string; at: string };
      refused?: { commit: string; message: string; at: string };
    } | null;
  };
  out(`ready: ${r.ready}`);
  out(`policy revision: ${r.policy?.revision ?? '(local folder)'}`);
  out(`bundle digest: ${r.policy?.bundle_digest ?? '-'}`);
  out(`source: ${r.policy?.source ?? '-'} (loaded ${r.policy?.loaded_at ?? '-'})`);
  const refused = r.policy_sync?.refused;
  if (refused) out(`REFUSED commit ${refused.commit} (${refused.at}): ${refused.message}`);
  const last = r.policy_sync?.lastError;
  if (last && last.commit !== refused?.commit)
    out(
      `last sync error: ${last.commit === undefined ? 'fetch' : last.commit.slice(0, 12)} ${last.message} (${last.at})`,
    );
  else if (!r.policy_sync && r.last_policy_error) out(`last policy error: ${r.last_policy_error}`);
  return r.ready ? 0 : 1;
}

export async function policyTest(
  opts: { dir: string; coverage: string },
  out: (line: string) => void,
): Promise<number> {
  const opa = await ensureOpa(out, toolEnv().opaPath);
  const report = await testPolicies(opa, path.resolve(opts.dir), Number(opts.coverage));
  for (const s of report.steps) {
    out(`${s.ok ? 'ok  ' : 'FAIL'} ${s.name}${s.ok && s.name.startsWith('coverage') ? `: ${s.detail}` : ''}`);
    if (!s.ok && s.detail) out(s.detail.replace(/^/gm, '     '));
  }
  return report.ok ? 0 : 1;
}
