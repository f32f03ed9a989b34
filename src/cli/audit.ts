import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  ApprovalIndex,
  describeRecord,
  type RecordFilter,
  readRecords,
  readTimeline,
  sinceToIso,
} from '../audit/read.js';
import { verifyAuditRepo } from '../audit/verify.js';

export async function auditVerify(repo: string, out: (line: string) => void): Promise<number> {
  const report = await verifyAuditRepo(path.resolve(repo));
  if (report.ok) {
    out(
      `ok: ${report.records} record(s) in ${report.streams} stream(s), ${report.checkpoints} checkpoint(s), ${report.commits} commit(s), keys ${report.keys.join(', ') || '(none)'}`,
    );
    if (report.head) out(`head checkpoint: seq ${report.head.seq} sha256 ${report.head.hash}`);
    return 0;
  }
  out(`FAILED at ${report.error!.where}: ${report.error!.why}`);
  out(`(checked before the failure: ${report.records} record(s) in ${report.streams} stream(s))`);
  return 1;
}

/** `gitgate audit replay`: every exchange in time order, across sessions and streams, with arguments and the approvals that released calls. */
export async function auditReplay(
  repo: string,
  opts: { session?: string; caller?: string; since?: string; json?: boolean },
  out: (line: string) => void,
): Promise<number> {
  const root = path.resolve(repo);
  if (!existsSync(path.join(root, 'streams')))
    throw new Error(
      `${root} is not an audit repo (no streams/ folder): pass the gateway's <data-dir>/audit or a clone of it`,
    );
  const filter: RecordFilter = {
    ...(opts.session !== undefined ? { session: opts.session } : {}),
    ...(opts.caller !== undefined ? { caller: opts.caller } : {}),
    ...(opts.since !== undefined ? { since: sinceToIso(opts.since) } : {}),
  };
  const approvals = new ApprovalIndex(root);
  let n = 0;
  let stream = '';
  for (const r of readTimeline(root, filter)) {
    n++;
    if (opts.json === true) {
      out(JSON.stringify(r));
      continue;
    }
    if (r.stream !== stream) {
      stream = r.stream;
      out(`== ${stream}${r.upstream ? ` (upstream ${r.upstream})` : ''}`);
    }
    out(describeRecord(r, approvals));
  }
  if (n === 0 && opts.json !== true) out('no records match');
  return 0;
}

export async function auditExport(
  repo: string,
  opts: { since?: string },
  out: (line: string) => void,
): Promise<number> {
  for await (const r of readRecords(
    path.resolve(repo),
    opts.since !== undefined ? { since: sinceToIso(opts.since) } : {},
  ))
    out(JSON.stringify(r));
  return 0;
}
