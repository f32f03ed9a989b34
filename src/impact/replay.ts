import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { chains, isOldFormat, recordOf, selfConsistent } from '../audit/reader.js';
import { type AuditRecord, hashLine, leafHashHex, parseLine, verifyParsed } from '../audit/record.js';
import { CHECKPOINT_STREAM } from '../audit/store.js';
import { loadKeys } from '../audit/verify-v1.js';
import type { Decision } from '../policy/decision.js';
import type { PolicyInstance } from '../policy/engine.js';
import type { PolicyInput } from '../policy/input.js';

export type Outcome = 'allow' | 'deny' | 'approval';

export interface Example {
  readonly transition: string;
  readonly ts: string;
  readonly caller: string;
  readonly upstream: string;
  readonly method: string;
  readonly tool?: string;
  readonly base: readonly string[];
  readonly head: readonly string[];
}

export interface ImpactReport {
  /** Audit records read in the replayed streams (every type). */
  readonly records: number;
  /** Decision records in the window (replayed or skipped). */
  readonly decisions: number;
  /** Streams with at least one replayed decision. */
  readonly streams: number;
  /** Distinct UTC days with a replayed decision, and the first and last one replayed. */
  readonly days: number;
  readonly from?: string;
  readonly to?: string;
  readonly replayed: number;
  readonly skipped: number;
  readonly skippedWhy: Record<string, number>;
  readonly transitions: Record<string, number>;
  readonly maskChanges: number;
  readonly credentialTtlChanges: number;
  /** Per transition: the callers and tools it hits most, [name, count] best first. */
  readonly top: Record<string, { readonly callers: [string, number][]; readonly tools: [string, number][] }>;
  readonly examples: readonly Example[];
  /** Transitions of calls where either revision says risk: high. */
  readonly highRisk: Record<string, number>;
}

export function outcomeOf(d: Decision): Outcome {
  if (!d.allow) return 'deny';
  return d.approval.required ? 'approval' : 'allow';
}

const EXAMPLES_PER_TRANSITION = 3;
const TOP = 5;

/**
 * Replay every recorded decision input of the audit repo on two policy
 * revisions, streaming one line at a time. A record counts as verified when
 * its stream's hash chain links it to a head named by a signed checkpoint
 * (one SHA-256 per record), or, past the last checkpoint, when its own
 * signature verifies. Unverifiable or incomplete records are skipped and counted.
 */
export function replayImpact(
  auditRepo: string,
  base: PolicyInstance,
  head: PolicyInstance,
  opts: { since?: string; onProgress?: (records: number) => void; streams?: readonly string[] } = {},
): ImpactReport {
  return finish(replayPart(auditRepo, base, head, anchors(auditRepo), opts));
}

/** In anchors() of a v2 repo: its records make exactly the tree its checkpoint signs. */
const TREE_MATCHES = '\0tree';

/** A stream head named by a signed checkpoint. */
export interface Anchor {
  readonly seq: number;
  readonly hash: string;
}

/**
 * Signed checkpoints → every verified head of each stream, in seq order. Each
 * one lets replay release the decisions it has held since the previous one, so
 * what it holds is bounded by one commit's worth of a stream, not the stream.
 */
export function anchors(auditRepo: string): Map<string, Anchor[]> {
  // A transparency-log repo: one entry says its records make the tree its checkpoint signs.
  if (!isOldFormat(auditRepo)) return new Map(selfConsistent(auditRepo) ? [[TREE_MATCHES, []]] : []);
  const keys = loadKeys(auditRepo);
  const anchored = new Map<string, Anchor[]>();
  let prevCp: string | null = null;
  for (const file of chains(auditRepo).get(CHECKPOINT_STREAM) ?? []) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line === '') continue;
      let p: ReturnType<typeof parseLine>;
      try {
        p = parseLine(line);
      } catch {
        return anchored;
      }
      const key = keys.get(p.kid);
      if (key === undefined || !verifyParsed(p, key) || p.record.prev !== prevCp) return anchored; // nothing after a broken checkpoint is trusted
      prevCp = hashLine(line);
      for (const [stream, h] of Object.entries((p.record.data?.heads ?? {}) as Record<string, Anchor>)) {
        const list = anchored.get(stream) ?? anchored.set(stream, []).get(stream)!;
        // Checkpoints come in order, so heads only grow; a repeated head adds nothing.
        if ((list.at(-1)?.seq ?? -1) < h.seq) list.push({ seq: h.seq, hash: h.hash });
      }
    }
  }
  return anchored;
}

/** Aggregates of one part of the streams (mergeable across workers). */
export interface PartialReport {
  records: number;
  decisions: number;
  streams: number;
  dates: string[];
  from?: string;
  to?: string;
  replayed: number;
  skipped: number;
  skippedWhy: Record<string, number>;
  transitions: Record<string, number>;
  highRisk: Record<string, number>;
  maskChanges: number;
  credentialTtlChanges: number;
  counters: Record<string, { callers: [string, number][]; tools: [string, number][] }>;
  examples: Example[];
}

export function mergeParts(parts: readonly PartialReport[]): PartialReport {
  const out: PartialReport = {
    records: 0,
    decisions: 0,
    streams: 0,
    dates: [],
    replayed: 0,
    skipped: 0,
    skippedWhy: {},
    transitions: {},
    highRisk: {},
    maskChanges: 0,
    credentialTtlChanges: 0,
    counters: {},
    examples: [],
  };
  const dates = new Set<string>();
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  for (const p of parts) {
    out.records += p.records;
    out.decisions += p.decisions;
    out.streams += p.streams;
    for (const d of p.dates) dates.add(d);
    if (p.from !== undefined && (out.from === undefined || p.from < out.from)) out.from = p.from;
    if (p.to !== undefined && (out.to === undefined || p.to > out.to)) out.to = p.to;
    out.replayed += p.replayed;
    out.skipped += p.skipped;
    out.maskChanges += p.maskChanges;
    out.credentialTtlChanges += p.credentialTtlChanges;
    add(out.skippedWhy, p.skippedWhy);
    add(out.transitions, p.transitions);
    add(out.highRisk, p.highRisk);
    for (const [t, c] of Object.entries(p.counters)) {
      const into = out.counters[t] ?? { callers: [], tools: [] };
      out.counters[t] = into;
      for (const k of ['callers', 'tools'] as const) {
        const m = new Map(into[k]);
        for (const [name, n] of c[k]) m.set(name, (m.get(name) ?? 0) + n);
        into[k] = [...m];
      }
    }
    for (const e of p.examples)
      if (out.examples.filter((x) => x.transition === e.transition).length < EXAMPLES_PER_TRANSITION)
        out.examples.push(e);
  }
  out.dates = [...dates].sort();
  return out;
}

export function finish(p: PartialReport): ImpactReport {
  const top = Object.fromEntries(
    Object.entries(p.counters).map(([t, c]) => [
      t,
      {
        callers: [...c.callers].sort((x, y) => y[1] - x[1]).slice(0, TOP),
        tools: [...c.tools].sort((x, y) => y[1] - x[1]).slice(0, TOP),
      },
    ]),
  );
  return {
    records: p.records,
    decisions: p.decisions,
    streams: p.streams,
    days: new Set(p.dates).size,
    ...(p.from !== undefined ? { from: p.from } : {}),
    ...(p.to !== undefined ? { to: p.to } : {}),
    replayed: p.replayed,
    skipped: p.skipped,
    skippedWhy: p.skippedWhy,
    transitions: p.transitions,
    maskChanges: p.maskChanges,
    credentialTtlChanges: p.credentialTtlChanges,
    top,
    examples: p.examples,
    highRisk: p.highRisk,
  };
}

/** Replay the given streams (default: all) against both revisions. */
export function replayPart(
  auditRepo: string,
  base: PolicyInstance,
  head: PolicyInstance,
  anchored: ReadonlyMap<string, readonly Anchor[]>,
  opts: { since?: string; onProgress?: (records: number) => void; streams?: readonly string[] } = {},
): PartialReport {
  // A transparency-log repo (v2): a record is vouched for by the next record of its stream (whose prev is its
  // leaf hash), a stream's last one by the signed tree (see anchors); `gitgate audit verify --key` is what
  // proves the log itself. The old format: checkpoints and each record's signature.
  const v2 = !isOldFormat(auditRepo);
  const treeMatches = anchored.has(TREE_MATCHES);
  const keys = v2 ? new Map() : loadKeys(auditRepo);
  const encoder = new TextEncoder();
  const transitions: Record<string, number> = {};
  const highRisk: Record<string, number> = {};
  const counters: Record<string, { callers: Map<string, number>; tools: Map<string, number> }> = {};
  const examples: Example[] = [];
  const skippedWhy: Record<string, number> = {};
  let replayed = 0;
  let skipped = 0;
  let records = 0;
  let decisions = 0;
  const dates = new Set<string>();
  const touched = new Set<string>();
  let from: string | undefined;
  let to: string | undefined;
  let maskChanges = 0;
  let credentialTtlChanges = 0;
  let seen = 0;
  const skip = (why: string, n = 1) => {
    skipped += n;
    skippedWhy[why] = (skippedWhy[why] ?? 0) + n;
  };
  const all = chains(auditRepo);
  const only = opts.streams === undefined ? undefined : new Set(opts.streams);

  interface Pending {
    readonly record: AuditRecord;
    readonly input: PolicyInput;
    readonly parsed?: ReturnType<typeof parseLine>;
  }
  /** Where the chain cannot vouch for a record, its own signature still can (old format only). */
  const bySignature = (p: Pending) => {
    if (p.parsed === undefined) return skip('the chain is broken');
    const key = keys.get(p.parsed.kid);
    if (key !== undefined && verifyParsed(p.parsed, key)) replay(p);
    else skip('signature does not verify');
  };
  const replay = ({ record: r, input }: Pending) => {
    // Serialized once, evaluated on both revisions.
    const json = encoder.encode(JSON.stringify(input)).buffer as ArrayBuffer;
    const a = base.evaluateJson(json);
    const b = head.evaluateJson(json);
    replayed++;
    touched.add(r.stream);
    dates.add(r.ts.slice(0, 10));
    if (from === undefined || r.ts < from) from = r.ts;
    if (to === undefined || r.ts > to) to = r.ts;
    if ((a.mask.length > 0 || b.mask.length > 0) && JSON.stringify(a.mask) !== JSON.stringify(b.mask)) maskChanges++;
    if (a.credential.ttl_seconds !== b.credential.ttl_seconds) credentialTtlChanges++;
    const oa = outcomeOf(a);
    const ob = outcomeOf(b);
    if (oa === ob) return;
    const t = `${oa}->${ob}`;
    transitions[t] = (transitions[t] ?? 0) + 1;
    if (a.risk === 'high' || b.risk === 'high') highRisk[t] = (highRisk[t] ?? 0) + 1;
    const c = counters[t] ?? { callers: new Map(), tools: new Map() };
    counters[t] = c;
    const caller = input.identity.sub;
    const tool = input.mcp.tool ?? input.mcp.method;
    c.callers.set(caller, (c.callers.get(caller) ?? 0) + 1);
    c.tools.set(tool, (c.tools.get(tool) ?? 0) + 1);
    if (examples.filter((e) => e.transition === t).length < EXAMPLES_PER_TRANSITION) {
      examples.push({
        transition: t,
        ts: r.ts,
        caller,
        upstream: input.upstream.name,
        method: input.mcp.method,
        ...(input.mcp.tool !== undefined ? { tool: input.mcp.tool } : {}),
        base: a.reasons,
        head: b.reasons,
      });
    }
  };

  // 2. Each stream, in order: decisions wait until the chain reaches the next anchored head.
  for (const [stream, files] of all) {
    if (stream === CHECKPOINT_STREAM || (only !== undefined && !only.has(stream))) continue;
    const marks = anchored.get(stream) ?? [];
    const last = marks.at(-1);
    let next = 0;
    let pending: Pending[] = [];
    let prev: string | null = null;
    let broken = false;
    let seq = 0;
    /** v2: the decision before, until the record after it vouches for it. */
    let held: Pending | undefined;
    for (const file of files) {
      for (const line of readLines(file)) {
        if (line === '') continue;
        records++;
        if (++seen % 10_000 === 0) opts.onProgress?.(seen);
        const hash = v2 ? leafHashHex(line) : hashLine(line);
        let parsed: ReturnType<typeof parseLine> | undefined;
        let r: AuditRecord | undefined;
        try {
          if (v2) r = line.startsWith('{"jws":') ? undefined : recordOf(line);
          else {
            parsed = parseLine(line);
            r = parsed.record;
          }
        } catch {
          broken = true;
        }
        if (r === undefined) skip('unreadable record');
        if (held !== undefined) {
          if (r !== undefined && r.prev === prev) replay(held);
          else skip('the chain is broken');
          held = undefined;
        }
        if (r === undefined || r.seq !== seq || r.prev !== prev) broken = true;
        const covered = !broken && (v2 || (last !== undefined && seq <= last.seq));
        if (broken && pending.length > 0) {
          pending.forEach(bySignature);
          pending = [];
        }
        while (next < marks.length && marks[next]!.seq < seq) next++;
        const mark = covered && marks[next]?.seq === seq ? marks[next] : undefined;
        prev = hash;
        seq++;
        if (r !== undefined && r.type === 'decision' && !(opts.since !== undefined && r.ts < opts.since)) {
          decisions++;
          const input = (r.data as { input?: PolicyInput & { truncated?: boolean } } | undefined)?.input;
          if (input === undefined || input.truncated === true || input.mcp === undefined)
            skip('no complete policy input recorded');
          else if (v2) held = { record: r, input };
          else if (covered) pending.push({ record: r, input, ...(parsed !== undefined ? { parsed } : {}) });
          else bySignature({ record: r, input, ...(parsed !== undefined ? { parsed } : {}) }); // past the last checkpoint, or after a break
        }
        if (mark !== undefined) {
          if (hash === mark.hash) pending.forEach(replay);
          else {
            // The chain does not lead to what the checkpoint signed: trust nothing of it from here on.
            pending.forEach(bySignature);
            broken = true;
          }
          pending = [];
        }
      }
    }
    // The chain broke before reaching its last anchor: fall back to each record's signature.
    pending.forEach(bySignature);
    if (held !== undefined) {
      if (treeMatches) replay(held);
      else skip('not covered by the signed checkpoint');
    }
  }
  return {
    records,
    decisions,
    streams: touched.size,
    dates: [...dates].sort(),
    ...(from !== undefined ? { from } : {}),
    ...(to !== undefined ? { to } : {}),
    replayed,
    skipped,
    skippedWhy,
    transitions,
    highRisk,
    maskChanges,
    credentialTtlChanges,
    counters: Object.fromEntries(
      Object.entries(counters).map(([t, c]) => [t, { callers: [...c.callers], tools: [...c.tools] }]),
    ),
    examples,
  };
}

const CHUNK = 1 << 20;

/**
 * The lines of a file, read in 1 MiB chunks: memory stays bounded by the chunk
 * and the longest line, however large the file (readline costs several times
 * more per line). The decoder carries a character split across chunks.
 */
export function* readLines(file: string): Generator<string> {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    const decoder = new StringDecoder('utf8');
    let rest = '';
    for (let n = readSync(fd, buf, 0, CHUNK, null); n > 0; n = readSync(fd, buf, 0, CHUNK, null)) {
      const lines = (rest + decoder.write(buf.subarray(0, n))).split('\n');
      rest = lines.pop()!;
      yield* lines;
    }
    rest += decoder.end();
    if (rest !== '') yield rest;
  } finally {
    closeSync(fd);
  }
}
