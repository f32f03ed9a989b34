import { closeSync, createReadStream, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { boundedCache } from '../cache.js';
import { systemClock } from '../clock.js';
import { parseDuration } from '../config/duration.js';
import { printable } from '../printable.js';
import { sessionStreamName } from './auditor.js';
import { listFiles, recordOf } from './reader.js';
import type { AuditRecord } from './record.js';

export interface RecordFilter {
  readonly session?: string;
  readonly caller?: string;
  /** ISO time; records before it are skipped. */
  readonly since?: string;
}

/** Record files under `dir`: regular files only (a symlink anywhere below is refused, see listFiles). */
const files = (dir: string) => listFiles(dir, '.jsonl');

/** Every record of the repo's streams that passes the filter, one line at a time (constant memory). */
export async function* readRecords(repo: string, filter: RecordFilter = {}): AsyncGenerator<AuditRecord> {
  for (const file of files(path.join(repo, 'streams'))) {
    if (
      filter.session !== undefined &&
      !new RegExp(`${filter.session.replace(/[^\w-]/g, '')}(~\\d{6})?\\.jsonl$`).test(file)
    )
      continue;
    const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const line of rl) {
      if (line === '') continue;
      const r = recordOf(line);
      if (filter.since !== undefined && r.ts < filter.since) continue;
      if (filter.caller !== undefined && r.caller?.sub !== filter.caller) continue;
      yield r;
    }
  }
}

/** The lines of a stream's part files in order, read in 64 KiB chunks (one open file at a time). */
function* streamLines(files: readonly string[]): Generator<string> {
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (const file of files) {
    const fd = openSync(file, 'r');
    try {
      let rest = '';
      for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) {
        const lines = (rest + buf.toString('utf8', 0, n)).split('\n');
        rest = lines.pop()!;
        for (const l of lines) if (l !== '') yield l;
      }
      if (rest !== '') yield rest;
    } finally {
      closeSync(fd);
    }
  }
}

/** A stream's part files grouped and ordered (checkpoints excluded). */
function streamFiles(repo: string): Map<string, string[]> {
  const parts = new Map<string, { part: number; file: string }[]>();
  const root = path.join(repo, 'streams');
  for (const file of files(root)) {
    const m = /^(.+?)(?:~(\d{6}))?\.jsonl$/.exec(path.relative(root, file).split(path.sep).join('/'));
    if (!m) continue;
    (parts.get(m[1]!) ?? parts.set(m[1]!, []).get(m[1]!)!).push({ part: m[2] === undefined ? 0 : Number(m[2]), file });
  }
  return new Map([...parts].map(([s, p]) => [s, p.sort((a, b) => a.part - b.part).map((x) => x.file)]));
}

/** Streams a filter can skip without reading: another session's. */
function wanted(stream: string, filter: RecordFilter): boolean {
  if (filter.session === undefined) return true;
  return (
    stream.startsWith('sessions/') &&
    (stream.endsWith(`/${filter.session}`) || stream.endsWith(`/${sessionStreamName(filter.session)}`))
  );
}

/**
 * Every record that passes the filter, across all streams, in time order (ties:
 * stream, then seq). Streams are merged as they start: a stream is opened when
 * the timeline reaches its first record and closed at its end, so what is held
 * is one record (and one file) per stream alive at that moment.
 */
export function* readTimeline(repo: string, filter: RecordFilter = {}): Generator<AuditRecord> {
  interface Cursor {
    readonly stream: string;
    readonly lines: Generator<string>;
    head: AuditRecord;
  }
  const parse = (line: string) => recordOf(line);
  // Each stream's first record, to know when to open it.
  const waiting: { stream: string; files: string[]; first: string }[] = [];
  for (const [stream, list] of streamFiles(repo)) {
    if (!wanted(stream, filter)) continue;
    const lines = streamLines(list);
    const first = lines.next();
    lines.return(undefined);
    if (first.done !== true) waiting.push({ stream, files: list, first: parse(first.value).ts });
  }
  waiting.sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : a.stream.localeCompare(b.stream)));
  const before = (a: Cursor, b: Cursor) =>
    a.head.ts < b.head.ts ||
    (a.head.ts === b.head.ts && (a.stream < b.stream || (a.stream === b.stream && a.head.seq < b.head.seq)));
  // A binary min-heap of the open streams by their next record.
  const heap: Cursor[] = [];
  const push = (c: Cursor) => {
    heap.push(c);
    for (let i = heap.length - 1; i > 0; ) {
      const up = (i - 1) >> 1;
      if (!before(heap[i]!, heap[up]!)) break;
      [heap[i], heap[up]] = [heap[up]!, heap[i]!];
      i = up;
    }
  };
  const pop = (): Cursor => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  const advance = (c: Cursor) => {
    const n = c.lines.next();
    if (n.done === true) return;
    c.head = parse(n.value);
    push(c);
  };
  let w = 0;
  for (;;) {
    while (w < waiting.length && (heap.length === 0 || waiting[w]!.first <= heap[0]!.head.ts)) {
      const s = waiting[w++]!;
      const lines = streamLines(s.files);
      const n = lines.next();
      if (n.done !== true) push({ stream: s.stream, lines, head: parse(n.value) });
    }
    if (heap.length === 0) return;
    const c = pop();
    const r = c.head;
    advance(c);
    if (filter.since !== undefined && r.ts < filter.since) continue;
    if (filter.caller !== undefined && r.caller?.sub !== filter.caller) continue;
    yield r;
  }
}

/** Who decided each approval and how, from the approval streams (streams/approvals/<date>/<id>). */
export interface ApprovalOutcome {
  readonly id: string;
  readonly url?: string;
  readonly approvedBy: readonly string[];
  readonly deniedBy?: string;
  readonly reason?: string;
  readonly executed: boolean;
}

export class ApprovalIndex {
  #byId: Map<string, string[]> | undefined;
  /** Outcomes read so far (none: no such approval), bounded by the one cache. */
  readonly #cache = boundedCache<string, { readonly out: ApprovalOutcome | undefined }>({ max: 10_000, ttlMs: 0 });
  constructor(private readonly repo: string) {}

  get(id: string): ApprovalOutcome | undefined {
    const hit = this.#cache.get(id);
    if (hit !== undefined) return hit.out;
    this.#byId ??= new Map(
      [...streamFiles(this.repo)]
        .filter(([s]) => s.startsWith('approvals/'))
        .map(([s, f]) => [s.slice(s.lastIndexOf('/') + 1), f]),
    );
    const list = this.#byId.get(id);
    let out: ApprovalOutcome | undefined;
    if (list !== undefined) {
      let url: string | undefined;
      let approvedBy: string[] = [];
      let deniedBy: string | undefined;
      let reason: string | undefined;
      let executed = false;
      for (const f of list) {
        for (const line of readFileSync(f, 'utf8').split('\n')) {
          if (line === '') continue;
          const r = recordOf(line);
          const d = (r.data ?? {}) as Record<string, unknown>;
          if (typeof d.url === 'string') url = d.url;
          if (r.type === 'approval.approved' && Array.isArray(d.by)) approvedBy = d.by.map(String);
          if (r.type === 'approval.denied') {
            deniedBy = typeof d.by === 'string' ? d.by : undefined;
            reason = typeof d.reason === 'string' ? d.reason : undefined;
          }
          if (r.type === 'approval.executed') {
            executed = true;
            const by = (d.approvals as { login?: string }[] | undefined)
              ?.map((a) => a.login)
              .filter((l): l is string => typeof l === 'string');
            if (by !== undefined && by.length > 0) approvedBy = by;
          }
        }
      }
      out = {
        id,
        ...(url !== undefined ? { url } : {}),
        approvedBy,
        ...(deniedBy !== undefined ? { deniedBy } : {}),
        ...(reason !== undefined ? { reason } : {}),
        executed,
      };
    }
    this.#cache.set(id, { out });
    return out;
  }
}

const ARGS_SHOWN = 240;
/** Compact JSON, cut to a line's worth. */
function brief(v: unknown): string {
  const text = JSON.stringify(v) ?? '';
  return text.length <= ARGS_SHOWN ? text : `${text.slice(0, ARGS_SHOWN - 1)}…`;
}

/** "7d", "12h", "30m" or an ISO date → ISO timestamp. */
export function sinceToIso(since: string, now = systemClock.now()): string {
  if (/^\d+(ms|s|m|h|d)$/.test(since.trim())) return new Date(now - parseDuration(since) * 1000).toISOString();
  const d = new Date(since);
  if (Number.isNaN(d.getTime())) throw new Error(`invalid --since "${since}" (use 7d, 12h, 30m or an ISO date)`);
  return d.toISOString();
}

/** One human-readable timeline line for a record; with `approvals`, a call an approval released names it and who approved. */
export function describeRecord(r: AuditRecord, approvals?: ApprovalIndex): string {
  const t = r.ts.replace('T', ' ').replace('Z', '');
  const what = [r.method, r.tool].filter(Boolean).join(' ');
  const d = (r.data ?? {}) as Record<string, unknown>;
  let detail = '';
  switch (r.type) {
    case 'decision': {
      const verdict = d.allow === true ? (d.approval_required === true ? 'APPROVAL REQUIRED' : 'ALLOW') : 'DENY';
      const policy = (d.policy as { revision?: string | null; bundle_digest?: string } | undefined) ?? {};
      const mcp = (d.input as { mcp?: { arguments?: unknown; uri?: string } } | undefined)?.mcp;
      const what =
        mcp?.uri !== undefined
          ? `  uri ${mcp.uri}`
          : mcp?.arguments !== undefined
            ? `  args ${brief(mcp.arguments)}`
            : '';
      detail = `${verdict}${what}  ${(d.reasons as string[] | undefined)?.join('; ') ?? ''}  [policy ${policy.revision ?? policy.bundle_digest?.slice(0, 12) ?? '?'}]`;
      break;
    }
    case 'response':
      detail = `${d.ok === true ? 'ok' : `error ${JSON.stringify(d.error)}`}  ${d.bytes} B  ${Number(d.ms).toFixed(1)} ms${released(d, approvals)}`;
      break;
    case 'message': {
      const m = (d.message ?? {}) as { method?: string; id?: unknown };
      detail = `to the caller: ${m.method ?? 'response'}${m.id !== undefined ? ` (id ${JSON.stringify(m.id)})` : ''}`;
      break;
    }
    case 'error':
      detail = `${d.code}: ${d.message}${released(d, approvals)}`;
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
  // One record, one line: what callers and upstreams wrote (a tool name, a uri, reasons, errors) cannot move the cursor, erase or add lines.
  return printable(`${t}  ${r.type.padEnd(18)} ${(r.caller?.sub ?? '-').padEnd(10)} ${what.padEnd(24)} ${detail}`);
}

/** "  released by approval <id> (approved by a, b; <url>)" for an exchange linked to an approval. */
function released(d: Record<string, unknown>, approvals: ApprovalIndex | undefined): string {
  const id = d.approval_id;
  if (typeof id !== 'string') return '';
  const a = approvals?.get(id);
  if (a === undefined) return `  approval ${id}`;
  const where = a.url !== undefined ? `; ${a.url}` : '';
  if (d.ok === true && a.approvedBy.length > 0)
    return `  released by approval ${id} (approved by ${a.approvedBy.join(', ')}${where})`;
  if (a.deniedBy !== undefined) return `  approval ${id} denied by ${a.deniedBy}: ${a.reason ?? ''}`;
  return `  approval ${id} (${a.approvedBy.length > 0 ? `approved by ${a.approvedBy.join(', ')}` : 'pending'}${where})`;
}
