import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { auditLogDirs } from '../audit/branches.js';
import { sinceToIso } from '../audit/read.js';
import { githubCiEnv, toolEnv } from '../config/load.js';
import { upsertComment } from '../impact/comment.js';
import { materialize } from '../impact/materialize.js';
import { replayImpactParallel } from '../impact/parallel.js';
import type { ImpactReport } from '../impact/replay.js';
import { coverageText, guardHits, guardsFrom, toJson, toMarkdown } from '../impact/report.js';
import { buildPolicyBundle } from '../policy/build.js';
import { readBundle } from '../policy/bundle.js';
import { instantiate } from '../policy/engine.js';
import { ensureOpa } from '../policy/opa-binary.js';

export interface ImpactOptions {
  base: string;
  head: string;
  repo: string;
  dir: string;
  /** The audit repos: one, or one per replica (each its own log), replayed together. */
  audit: readonly string[];
  since?: string;
  format: 'markdown' | 'json';
  guard: string[];
  ack?: boolean;
  /** Pass even when nothing was replayed (a new audit repo, or none yet). */
  allowEmpty?: boolean;
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

/** Why a replay that replayed nothing did, and what to do about it; undefined when something was replayed. */
function whyEmpty(report: ImpactReport, audit: string, since: string | undefined): string | undefined {
  if (report.replayed > 0) return undefined;
  if (report.records === 0)
    return `the audit repo ${audit} holds no records (a gateway writes them under <data-dir>/audit; clone the repo it pushes to and pass --audit <clone>)`;
  if (report.decisions === 0)
    return `none of the ${report.records} record(s) in ${audit} is a decision${since !== undefined ? ` since ${since}` : ''}${since !== undefined ? ' (widen --since)' : ''}`;
  const why = Object.entries(report.skippedWhy)
    .map(([w, n]) => `${n} ${w}`)
    .join(', ');
  return `all ${report.decisions} decision(s) were skipped (${why}): check that the clone is complete and verifies (gitgate audit verify ${audit} --key …)`;
}

/**
 * `gitgate policy impact`: replay recorded decisions on two policy revisions and
 * report what changes. Exit 2 when a guard is hit and not acknowledged; exit 1
 * when nothing was replayed (missing or empty audit repo, nothing in the window)
 * unless --allow-empty: a check that looked at nothing must not pass as a clean one.
 */
export async function policyImpact(
  o: ImpactOptions,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  guardsFrom(o.guard); // a bad --guard fails before anything is read
  const audits = o.audit.map((a) => path.resolve(a));
  const missing = audits.filter((a) => !existsSync(a) || !statSync(a).isDirectory());
  if (missing.length > 0) {
    const msg = `audit repo ${missing.join(', ')} not found: clone the gateway's audit repo (git clone --depth 1 <url>) and pass --audit <clone>`;
    if (o.allowEmpty !== true || missing.length < audits.length)
      throw new Error(`${msg}, or pass --allow-empty to accept a check that replays nothing`);
    err(`gitgate: ${msg}; --allow-empty: nothing to replay, passing`);
    return 0;
  }
  // A shared audit repo (multi-replica mode) stands for each replica's branch of it.
  const { logs, cleanup } = await auditLogDirs(o.audit);
  try {
    return await replay(
      o,
      logs.map((l) => l.dir),
      out,
      err,
    );
  } finally {
    cleanup();
  }
}

async function replay(
  o: ImpactOptions,
  audits: readonly string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const guards = guardsFrom(o.guard);
  const audit = o.audit.join(' ');
  const opa = await ensureOpa(err, toolEnv().opaPath);
  const repo = path.resolve(o.repo);
  const [base, head] = await Promise.all([revision(opa, repo, o.base, o.dir), revision(opa, repo, o.head, o.dir)]);
  const since = o.since !== undefined ? sinceToIso(o.since) : undefined;
  if (process.stderr.isTTY === true)
    process.stderr.write(`replaying ${o.audit.join(', ')} on ${o.base} and ${o.head}…\n`);
  const report = await replayImpactParallel(audits, base, head, since !== undefined ? { since } : {});
  const hits = guardHits(report, guards);
  const acknowledged = o.ack === true;
  const empty = whyEmpty(report, audit, o.since);
  const markdown = toMarkdown(report, {
    base: o.base,
    head: o.head,
    ...(o.since !== undefined ? { since: o.since } : {}),
    guards,
    hits,
    acknowledged,
    ...(empty !== undefined ? { empty } : {}),
  });
  out(o.format === 'json' ? JSON.stringify(toJson(report, guards, hits)) : markdown);
  err(`replayed ${report.replayed} decision(s): ${coverageText(report)}`);
  if (o.githubComment === true) {
    const ci = githubCiEnv();
    if (ci.token === undefined || ci.repository === undefined)
      throw new Error('--github-comment needs GITHUB_TOKEN and GITHUB_REPOSITORY');
    const pr =
      o.pr !== undefined
        ? Number(o.pr)
        : (
            JSON.parse(readFileSync(ci.eventPath ?? '/dev/null', 'utf8') || '{}') as {
              pull_request?: { number?: number };
            }
          ).pull_request?.number;
    if (pr === undefined || !Number.isInteger(pr))
      throw new Error('--github-comment needs --pr <number> (or a pull_request event)');
    const [owner, name] = ci.repository.split('/') as [string, string];
    const how = await upsertComment({ baseUrl: ci.apiUrl, token: ci.token, owner, repo: name, pr, body: markdown });
    err(`impact comment ${how} on ${ci.repository}#${pr}`);
  }
  if (hits.length > 0 && !acknowledged) return 2;
  if (empty !== undefined) {
    if (o.allowEmpty === true) {
      err(`gitgate: nothing was replayed (${empty}); --allow-empty: passing`);
      return 0;
    }
    err(
      `gitgate: nothing was replayed: ${empty}. A check that looked at nothing does not pass; --allow-empty accepts it`,
    );
    return 1;
  }
  return 0;
}
