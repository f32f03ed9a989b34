import { createReadStream, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseDuration } from '../config/duration.js';
import { parseLine, type AuditRecord } from './record.js';

export interface RecordFilter {
  readonly session?: string;
  readonly caller?: string;
  /** ISO time; records before it are skipped. */
  readonly since?: string;
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (e.name.endsWith('.jsonl')) out.push(p);
  }
  return out.sort();
}

/** Every record of the repo's streams that passes the filter, one line at a time (constant memory). */
export async function* readRecords(repo: string, filter: RecordFilter = {}): AsyncGenerator<AuditRecord> {
  for (const file of files(path.join(repo, 'streams'))) {
    if (filter.session !== undefined && !new RegExp(`${filter.session.replace(/[^\w-]/g, '')}(~\\d{6})?\\.jsonl$`).test(file)) continue;
    const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const line of rl) {
      if (line === '') continue;
      const r = parseLine(line).record;
      if (filter.since !== undefined && r.ts < filter.since) continue;
      if (filter.caller !== undefined && r.caller?.sub !== filter.caller) continue;
      yield r;
    }
  }
}

/** "7d", "12h", "30m" or an ISO date → ISO timestamp. */
export function sinceToIso(since: string, now = Date.now()): string {
  if (/^\d+(ms|s|m|h|d)$/.test(since.trim())) return new Date(now - parseDuration(since) * 1000).toISOString();
  const d = new Date(since);
  if (Number.isNaN(d.getTime())) throw new Error(`invalid --since "${since}" (use 7d, 12h, 30m or an ISO date)`);
  return d.toISOString();
}

/** One human-readable timeline line for a record. */
export function describeRecord(r: AuditRecord): string {
  const t = r.ts.replace('T', ' ').replace('Z', '');
  const what = [r.method, r.tool].filter(Boolean).join(' ');
  const d = (r.data ?? {}) as Record<string, unknown>;
  let detail = '';
  switch (r.type) {
    case 'decision': {
      const verdict = d.allow === true ? (d.approval_required === true ? 'APPROVAL REQUIRED' : 'ALLOW') : 'DENY';
      const policy = (d.policy as { revision?: string | null; bundle_digest?: string } | undefined) ?? {};
      detail = `${verdict}  ${(d.reasons as string[] | undefined)?.join('; ') ?? ''}  [policy ${policy.revision ?? policy.bundle_digest?.slice(0, 12) ?? '?'}]`;
      break;
    }
    case 'response':
      detail = `${d.ok === true ? 'ok' : `error ${JSON.stringify(d.error)}`}  ${d.bytes} B  ${Number(d.ms).toFixed(1)} ms`;
      break;
    case 'message': {
      const m = (d.message ?? {}) as { method?: string; id?: unknown };
      detail = `to the caller: ${m.method ?? 'response'}${m.id !== undefined ? ` (id ${JSON.stringify(m.id)})` : ''}`;
      break;
    }
    case 'error':
      detail = `${d.code}: ${d.message}`;
      break;
    case 'session.open':
      detail = `protocol ${d.protocol_version}`;
      break;
    case 'session.close':
      detail = String(d.reason ?? '');
      break;
    case 'approval.requested':
      detail = `${d.approval_id} at ${d.url ?? '(opening)'}; needs ${d.min_approvals} from ${JSON.stringify(d.approvers)}`;
      break;
    case 'approval.approved':
      detail = `${d.approval_id} by ${JSON.stringify(d.by)}`;
      break;
    case 'approval.denied':
      detail = `${d.approval_id} by ${d.by}: ${d.reason}`;
      break;
    case 'approval.executed':
    case 'approval.expired':
      detail = String(d.approval_id);
      break;
    default:
      detail = JSON.stringify(d);
  }
  return `${t}  ${r.type.padEnd(18)} ${(r.caller?.sub ?? '-').padEnd(10)} ${what.padEnd(24)} ${detail}`;
}
