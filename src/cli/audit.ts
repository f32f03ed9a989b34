import path from 'node:path';
import { describeRecord, readRecords, sinceToIso, type RecordFilter } from '../audit/read.js';
import { verifyAuditRepo } from '../audit/verify.js';

export async function auditVerify(repo: string, out: (line: string) => void): Promise<number> {
  const report = await verifyAuditRepo(path.resolve(repo));
  if (report.ok) {
    out(`ok: ${report.records} record(s) in ${report.streams} stream(s), ${report.checkpoints} checkpoint(s), ${report.commits} commit(s), keys ${report.keys.join(', ') || '(none)'}`);
    if (report.head) out(`head checkpoint: seq ${report.head.seq} sha256 ${report.head.hash}`);
    return 0;
  }
  out(`FAILED at ${report.error!.where}: ${report.error!.why}`);
  out(`(checked before the failure: ${report.records} record(s) in ${report.streams} stream(s))`);
  return 1;
}

export async function auditReplay(repo: string, opts: { session?: string; caller?: string; since?: string; json?: boolean }, out: (line: string) => void): Promise<number> {
  const filter: RecordFilter = {
    ...(opts.session !== undefined ? { session: opts.session } : {}),
    ...(opts.caller !== undefined ? { caller: opts.caller } : {}),
    ...(opts.since !== undefined ? { since: sinceToIso(opts.since) } : {}),
  };
  let n = 0;
  let stream = '';
  for await (const r of readRecords(path.resolve(repo), filter)) {
    n++;
    if (opts.json === true) {
      out(JSON.stringify(r));
      continue;
    }
    if (r.stream !== stream) {
      stream = r.stream;
      out(`\n== ${stream}${r.upstream ? ` (upstream ${r.upstream})` : ''}`);
    }
    out(describeRecord(r));
  }
  if (n === 0 && opts.json !== true) out('no records match');
  return 0;
}

export async function auditExport(repo: string, opts: { since?: string }, out: (line: string) => void): Promise<number> {
  for await (const r of readRecords(path.resolve(repo), opts.since !== undefined ? { since: sinceToIso(opts.since) } : {})) out(JSON.stringify(r));
  return 0;
}
