import { readFileSync, rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { githubCiEnv, toolEnv } from '../config/load.js';
import { sinceToIso } from '../audit/read.js';
import { upsertComment } from '../impact/comment.js';
import { materialize } from '../impact/materialize.js';
import { replayImpactParallel } from '../impact/parallel.js';
import { guardHits, parseGuard, toJson, toMarkdown } from '../impact/report.js';
import { buildPolicyBundle } from '../policy/build.js';
import { readBundle } from '../policy/bundle.js';
import { instantiate } from '../policy/engine.js';
import { ensureOpa } from '../policy/opa-binary.js';

export interface ImpactOptions {
  base: string;
  head: string;
  repo: string;
  dir: string;
  audit: string;
  since?: string;
  format: 'markdown' | 'json';
  guard: string[];
  ack?: boolean;
  githubComment?: boolean;
  pr?: string;
}

/** The bundle of the policy folder at `ref`, built with the pinned opa (and smoke-tested). */
async function revision(opa: string, repo: string, ref: string, dir: string): Promise<Uint8Array> {
  const src = await materialize(repo, ref, dir);
  const out = mkdtempSync(path.join(tmpdir(), 'gitgate-impact-build-'));
  try {
    const built = await buildPolicyBundle({ opa, srcDir: src, outDir: out });
    const bytes = readFileSync(built.path);
    await instantiate(await readBundle(bytes), { source: `${repo}@${ref}` });
    return bytes;
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(path.dirname(src), { recursive: true, force: true });
  }
}

/**
 * `gitgate policy impact`: replay recorded decisions on two policy revisions and
 * report what changes. Exit 2 when a guard is hit and not acknowledged.
 */
export async function policyImpact(o: ImpactOptions, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const guards = o.guard.map(parseGuard);
  const opa = await ensureOpa(err, toolEnv().opaPath);
  const repo = path.resolve(o.repo);
  const [base, head] = await Promise.all([revision(opa, repo, o.base, o.dir), revision(opa, repo, o.head, o.dir)]);
  const since = o.since !== undefined ? sinceToIso(o.since) : undefined;
  if (process.stderr.isTTY === true) process.stderr.write(`replaying ${o.audit} on ${o.base} and ${o.head}…\n`);
  const report = await replayImpactParallel(path.resolve(o.audit), base, head, since !== undefined ? { since } : {});
  const hits = guardHits(report, guards);
  const acknowledged = o.ack === true;
  const markdown = toMarkdown(report, { base: o.base, head: o.head, ...(o.since !== undefined ? { since: o.since } : {}), hits, acknowledged });
  out(o.format === 'json' ? JSON.stringify(toJson(report)) : markdown);
  if (o.githubComment === true) {
    const ci = githubCiEnv();
    if (ci.token === undefined || ci.repository === undefined) throw new Error('--github-comment needs GITHUB_TOKEN and GITHUB_REPOSITORY');
    const pr = o.pr !== undefined ? Number(o.pr) : (JSON.parse(readFileSync(ci.eventPath ?? '/dev/null', 'utf8') || '{}') as { pull_request?: { number?: number } }).pull_request?.number;
    if (pr === undefined || !Number.isInteger(pr)) throw new Error('--github-comment needs --pr <number> (or a pull_request event)');
    const [owner, name] = ci.repository.split('/') as [string, string];
    const how = await upsertComment({ baseUrl: ci.apiUrl, token: ci.token, owner, repo: name, pr, body: markdown });
    err(`impact comment ${how} on ${ci.repository}#${pr}`);
  }
  return hits.length > 0 && !acknowledged ? 2 : 0;
}
