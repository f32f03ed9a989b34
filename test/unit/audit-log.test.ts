import { generateKeyPairSync } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditCommitter } from '../../src/audit/committer.js';
import { AuditLog, type StreamTail, type TailLookup } from '../../src/audit/log.js';
import { type AuditRecord, leafHashHex } from '../../src/audit/record.js';
import type { FromSealer } from '../../src/audit/sealer.js';
import { localSigning, loopSealer, sealerTree, threadSigning } from '../../src/audit/sealer-port.js';
import type { AuditStore } from '../../src/audit/store.js';
import { openCheckpoint, verifierOf } from '../../src/audit/tlog/note.js';
import {
  FileWal,
  recoverEntries,
  type WalEntry,
  type WalFiles,
  type WriteAheadLog,
  walFiles,
} from '../../src/audit/wal.js';
import { GatewayError } from '../../src/errors.js';
import { ManualClock } from '../helpers/clock.js';

const logKey = generateKeyPairSync('ed25519').privateKey;
const ORIGIN = 'gitgate.test/audit';
/** The log's tree (stored hashes) in a fresh folder, signing with the test's log key. */
const testTree = () =>
  sealerTree(
    mkdtempSync(path.join(tmpdir(), 'gitgate-tree-')),
    { origin: ORIGIN, key: logKey },
    localSigning({ origin: ORIGIN, key: logKey }),
  );
/** A stored line's record. */
const rec = (line: string) => JSON.parse(line) as AuditRecord;

/** An in-memory WAL that can be made to fail, with its segments as the committer reads them back (files()). */
class MemoryWal implements WriteAheadLog {
  entries: WalEntry[] = [];
  batches = 0;
  failing: Error | undefined;
  /** Segment n's entries; undefined once dropped. */
  readonly #segments: (WalEntry[] | undefined)[] = [[]];
  async append(entries: readonly WalEntry[]) {
    if (this.failing) throw this.failing;
    this.batches++;
    this.entries.push(...entries);
    this.#segments.at(-1)!.push(...entries);
  }
  roll() {
    this.#segments.push([]);
    return this.#segments.length - 2;
  }
  async close() {}
  files(): WalFiles {
    const segs = this.#segments;
    return {
      recover: () => ({ entries: segs.flatMap((s) => s ?? []), damage: [] }),
      list: (upTo) => segs.flatMap((s, n) => (s !== undefined && n <= upTo ? [n] : [])),
      read: (n) => ({ entries: [...(segs[n] ?? [])], damage: [] }),
      drop: (upTo) => {
        for (let n = 0; n <= upTo && n < segs.length; n++) segs[n] = undefined;
      },
    };
  }
}

/**
 * Timers and the clock the log reads move only when a test moves them; setImmediate stays real
 * (the in-thread sealer's messages are delivered a turn later).
 */
const fakeTime = () =>
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
afterEach(() => {
  vi.useRealTimers();
});

/** A log sealing in this thread into `wal`. */
const logOver = (wal: WriteAheadLog, tailOf: TailLookup = () => undefined) => {
  const tree = testTree();
  return new AuditLog(() => loopSealer(tree, wal), tailOf);
};

describe('AuditLog', () => {
  it('chains each stream with gap-free seq and prev = hash of the previous line', async () => {
    const wal = new MemoryWal();
    const log = logOver(wal);
    await Promise.all([
      log.append('a', { type: 'decision' }),
      log.append('b', { type: 'decision' }),
      log.append('a', { type: 'response' }),
    ]);
    const a = wal.entries.filter((e) => e.stream === 'a');
    expect(a.map((e) => e.seq)).toEqual([0, 1]);
    expect(rec(a[1]!.line).prev).toBe(leafHashHex(a[0]!.line));
    expect(rec(a[0]!.line).prev).toBeNull();
  });

  it('group-commits: many appends in one tick become few WAL writes', async () => {
    const wal = new MemoryWal();
    const log = logOver(wal);
    await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(`s${i % 3}`, { type: 'decision' })));
    expect(wal.entries).toHaveLength(100);
    expect(wal.batches).toBeLessThanOrEqual(2);
    expect(log.status()).toMatchObject({ healthy: true, appended: 100, uncommitted: 100 });
  });

  it('group-commits: the records appended in one turn of the loop are one message and one write', async () => {
    const sizes: number[] = [];
    const wal: WriteAheadLog = {
      append: async (entries) => void sizes.push(entries.length),
      roll: () => 0,
      close: async () => undefined,
    };
    const log = logOver(wal);
    await Promise.all(Array.from({ length: 16 }, (_, i) => log.append(`s${i}`, { type: 'response' })));
    expect(sizes).toEqual([16]);
  });

  it('a deferred record rides with the next record someone waits for, or is written within HOLD_MS', async () => {
    fakeTime();
    const wal = new MemoryWal();
    const log = logOver(wal);
    let decided = false;
    void log.append('s', { type: 'decision' }, { defer: true }).then(() => {
      decided = true;
    });
    await vi.advanceTimersByTimeAsync(99);
    expect(wal.entries).toHaveLength(0);
    await log.append('s', { type: 'response' });
    expect(wal.batches).toBe(1);
    expect(decided).toBe(true);
    // With nothing else coming, the hold timer writes it on its own, HOLD_MS (100 ms) later.
    let held = false;
    const deferred = log.append('s', { type: 'decision' }, { defer: true }).then(() => {
      held = true;
    });
    await vi.advanceTimersByTimeAsync(99);
    expect(held).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await deferred;
    expect(wal.batches).toBe(2);
    expect(wal.entries.map((e) => e.seq)).toEqual([0, 1, 2]);
  });

  it('continues a stream from its stored tail', async () => {
    const wal = new MemoryWal();
    const log = logOver(wal, (s) => (s === 'old' ? { seq: 41, hash: 'h41' } : undefined));
    await log.append('old', { type: 'decision' });
    expect(rec(wal.entries[0]!.line)).toMatchObject({ seq: 42, prev: 'h41' });
  });

  it('fails closed when the WAL cannot be written, and recovers its chain when it can', async () => {
    const wal = new MemoryWal();
    const log = logOver(wal);
    const health: string[] = [];
    log.onHealth((healthy, why) => health.push(healthy ? 'records again' : `unavailable: ${why}`));
    await log.append('s', { type: 'decision' });
    wal.failing = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    const a = log.append('s', { type: 'response' });
    const b = log.append('s', { type: 'decision' });
    await expect(a).rejects.toThrow(/Audit log unavailable: ENOSPC/);
    await expect(b).rejects.toBeInstanceOf(GatewayError);
    expect(() => log.assertWritable()).toThrow(/Audit log unavailable/);
    expect(log.status().healthy).toBe(false);
    wal.failing = undefined;
    await log.append('s', { type: 'response' });
    // The failed records never existed: the chain continues from the last durable one.
    expect(wal.entries.map((e) => rec(e.line).seq)).toEqual([0, 1]);
    expect(rec(wal.entries[1]!.line).prev).toBe(leafHashHex(wal.entries[0]!.line));
    expect(log.status().healthy).toBe(true);
    // Operators hear of each change once (logged by the gateway).
    expect(health).toEqual(['unavailable: ENOSPC: no space left on device', 'records again']);
  });
});

describe('AuditLog when its sealer stops', () => {
  it('fails what the sealer held, refuses to record until a new sealer runs, then continues every chain from its durable records', async () => {
    fakeTime();
    const wal = new MemoryWal();
    const ports: { die: () => void }[] = [];
    const tree = testTree();
    const log = new AuditLog(
      () => {
        const inner = loopSealer(tree, wal);
        let exit: (err: Error) => void = () => undefined;
        let dead = false;
        ports.push({
          die: () => {
            dead = true;
            exit(new Error('worker crashed'));
          },
        });
        return {
          post: (msg) => (dead ? undefined : inner.post(msg)),
          listen: (onMessage, onExit) => {
            exit = onExit;
            inner.listen((m) => (dead ? undefined : onMessage(m)), onExit);
          },
          terminate: () => inner.terminate(),
        };
      },
      () => undefined,
    );
    await log.append('s', { type: 'decision' });
    const lost = log.append('s', { type: 'response' });
    ports[0]!.die(); // before the sealer answers
    await expect(lost).rejects.toThrow(/Audit log unavailable: audit sealer stopped: worker crashed/);
    expect(() => log.assertWritable()).toThrow(/Audit log unavailable/);
    await expect(log.append('s', { type: 'response' })).rejects.toBeInstanceOf(GatewayError);
    // A commit meanwhile moves nothing and says why (it neither throws nor loses the durable record).
    const committed: WalEntry[] = [];
    const store: AuditStore = {
      tail: () => undefined,
      append: (es) => {
        committed.push(...es);
        return new Map();
      },
      treeSize: () => committed.length,
      commit: async () => undefined,
    };
    const committer = new AuditCommitter(log, wal.files(), store, { everyRecords: 1_000, everyMs: 60_000 });
    await committer.commit();
    expect(committer.status().lastError).toMatch(/audit WAL roll failed: audit sealer stopped: worker crashed/);
    expect(log.status().uncommitted).toBe(1);
    // A new sealer starts a second later; the stream goes on from its last durable record.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(ports).toHaveLength(2);
    await log.append('s', { type: 'response' });
    const records = wal.entries.map((e) => rec(e.line));
    expect(records.map((r) => r.seq)).toEqual([0, 1]);
    expect(records[1]!.prev).toBe(leafHashHex(wal.entries[0]!.line));
    expect(log.status().healthy).toBe(true);
    await committer.commit();
    expect(committed.map((e) => e.seq)).toEqual([0, 1]);
  });
});

describe('AuditLog when its sealer dies after a write it could not report', () => {
  it('the next sealer numbers leaves from the last durable one, so the tree has no hole', async () => {
    fakeTime();
    const wal = new MemoryWal();
    const tree = testTree();
    let dieOnDurable = false;
    let deaths = 0;
    const log = new AuditLog(
      () => {
        const inner = loopSealer(tree, wal);
        let dead = false;
        return {
          post: (msg) => (dead ? undefined : inner.post(msg)),
          listen: (onMessage, onExit) => {
            inner.listen((m) => {
              if (dead) return;
              if (m.kind === 'durable' && dieOnDurable) {
                // Written to the WAL and the tree, and then the thread is gone before it says so.
                dieOnDurable = false;
                dead = true;
                deaths++;
                onExit(new Error('worker crashed'));
                return;
              }
              onMessage(m);
            }, onExit);
          },
          terminate: () => inner.terminate(),
        };
      },
      () => undefined,
    );
    await log.append('s', { type: 'decision' });
    dieOnDurable = true;
    await expect(log.append('s', { type: 'response' })).rejects.toThrow(/audit sealer stopped: worker crashed/);
    expect(deaths).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    await log.append('s', { type: 'response' });
    expect(log.status().uncommitted).toBe(2);
    // The WAL holds the unreported record too; recovery (and a commit's read-back) lets the later entry at its leaf win.
    expect(wal.entries.map((e) => e.leaf)).toEqual([0, 1, 1]);
    const text = wal.entries.map((e) => `${e.hash}\t${e.seq}\t${JSON.stringify(e.stream)}\t${e.line}\n`).join('');
    const read = recoverEntries([{ name: 'wal-1.log', text }]).entries;
    expect(read.map((e) => [e.seq, e.leaf])).toEqual([
      [0, 0],
      [1, 1],
    ]);
    expect(read[1]!.line).toBe(wal.entries[2]!.line);
    const checkpoint = await log.close();
    expect(openCheckpoint(checkpoint!, [verifierOf(ORIGIN, logKey)]).size).toBe(2);
  });
});

describe('AuditLog when the WAL stalls', () => {
  it('a record not durable within stallMs makes the log unavailable (nothing new is forwarded) until the write completes', async () => {
    // A sealer stuck in a write (a hung disk): it takes records and answers nothing until released.
    fakeTime();
    const held: number[] = [];
    let deliver: (msg: FromSealer) => void = () => undefined;
    const log = new AuditLog(
      () => ({
        post: (msg) => void (msg.kind === 'seal' && held.push(...msg.items.flatMap((i) => ('id' in i ? [i.id] : [])))),
        listen: (onMessage) => {
          deliver = onMessage;
        },
        terminate: async () => undefined,
      }),
      () => undefined,
      { stallMs: 50 },
    );
    let durable = false;
    const pending = log.append('s', { type: 'response' }).then(() => (durable = true));
    await vi.advanceTimersByTimeAsync(25);
    expect(() => log.assertWritable()).not.toThrow();
    await vi.advanceTimersByTimeAsync(50);
    expect(durable).toBe(false);
    expect(() => log.assertWritable()).toThrow(/audit WAL write stalled: a record has waited 75 ms/);
    expect(log.status()).toMatchObject({ healthy: false });
    // The disk comes back: the record is durable and the log is available again.
    deliver({
      kind: 'durable',
      writeMs: 75,
      ids: held,
      hashes: held.map(() => 'H'),
      leaves: held,
    });
    await pending;
    expect(log.status().healthy).toBe(true);
    expect(() => log.assertWritable()).not.toThrow();
  });
});

describe('AuditCommitter on its clock', () => {
  it('commits every T ms of the injected clock, and measures its lag and commit time on it', async () => {
    const clock = new ManualClock();
    const tree = testTree();
    const wal = new MemoryWal();
    const log = new AuditLog(
      () => loopSealer(tree, wal),
      () => undefined,
      { clock },
    );
    const committed: WalEntry[] = [];
    const store: AuditStore = {
      tail: () => undefined,
      append: (es) => {
        committed.push(...es);
        return new Map();
      },
      treeSize: () => committed.length,
      commit: async () => undefined,
    };
    const committer = new AuditCommitter(log, wal.files(), store, { everyRecords: 1_000, everyMs: 5_000, clock });
    committer.start();
    await log.append('s', { type: 'decision' });
    clock.advance(4_999);
    await new Promise((r) => setImmediate(r));
    expect(committer.status().commits).toBe(0);
    clock.advance(1);
    await vi.waitFor(() => expect(committer.status().commits).toBe(1));
    expect(committed.map((e) => e.seq)).toEqual([0]);
    expect(committer.status()).toMatchObject({ lastCommitAt: clock.date().toISOString(), lastLagMs: 5_000 });
    await committer.stop();
    await log.close();
  });
});

describe('AuditLog.evict', () => {
  it('drops chain state of least recently used streams, but only those already stored', async () => {
    const wal = new MemoryWal();
    const stored = new Map<string, { seq: number; hash: string }>();
    const log = logOver(wal, (s) => stored.get(s));
    for (const s of ['a', 'b', 'c']) await log.append(s, { type: 'decision' });
    // Only b's record reached the store.
    stored.set('b', { seq: 0, hash: leafHashHex(wal.entries.find((e) => e.stream === 'b')!.line) });
    log.evict(1, (s, seq) => (stored.get(s)?.seq ?? -1) >= seq);
    // a is not stored, so it stays; b is evicted and continues from the store without a gap.
    await log.append('b', { type: 'response' });
    await log.append('a', { type: 'response' });
    const b = wal.entries.filter((e) => e.stream === 'b').map((e) => rec(e.line));
    expect(b.map((r) => r.seq)).toEqual([0, 1]);
    expect(b[1]!.prev).toBe(stored.get('b')!.hash);
    expect(wal.entries.filter((e) => e.stream === 'a').map((e) => rec(e.line).seq)).toEqual([0, 1]);
  });
});

let nextLeaf = 0;
/** A WAL entry whose line is laid out as the sealer writes it, tagged by its exchange (leaves numbered in order unless given). */
const entry = (stream: string, seq: number, tag: string, leaf = nextLeaf++): WalEntry => {
  const line = `{"v":2,"stream":${JSON.stringify(stream)},"seq":${seq},"ts":"2025-01-01T00:00:00.000Z","leaf":${leaf},"prev":null,"type":"decision","exchange":"${tag}"}`;
  return { stream, seq, leaf, line, hash: leafHashHex(line) };
};
const tagOf = (e: WalEntry) => (JSON.parse(e.line) as { exchange: string }).exchange;

const recovered = (dir: string) => walFiles(dir).recover().entries.map(tagOf);

describe('FileWal', () => {
  it('recovers intact entries across segments and discards a torn tail', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    await wal.append([entry('s', 0, 'L0')]);
    wal.roll();
    await wal.append([entry('s', 1, 'L1'), entry('t', 0, 'T0')]);
    await wal.close();
    const seg = path.join(dir, 'wal-2.log');
    appendFileSync(seg, `${leafHashHex('L2')}\t2\t"s"\tL`);
    expect(recovered(dir)).toEqual(['L0', 'L1', 'T0']);
    // A flipped checksum also ends the segment.
    writeFileSync(seg, readFileSync(seg, 'utf8').replace('"exchange":"T0"', '"exchange":"TX"'));
    expect(recovered(dir)).toEqual(['L0', 'L1']);
  });

  it('writes into a preallocated spare segment; recovery stops at the zeros after the last entry', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    expect(await wal.spareReady()).toBe(true);
    await wal.append([entry('s', 0, 'L0'), entry('s', 1, 'L1')]);
    const seg = path.join(dir, readdirSync(dir).find((f) => f.startsWith('wal-'))!);
    expect(statSync(seg).size).toBe(256 * 1024); // written in place: the file did not grow
    await wal.append([entry('s', 2, 'L2')]);
    wal.roll();
    await wal.spareReady();
    await wal.append([entry('t', 0, 'T0')]);
    await wal.close();
    expect(readdirSync(dir).filter((f) => f.endsWith('.spare'))).toEqual([]);
    expect(recovered(dir)).toEqual(['L0', 'L1', 'L2', 'T0']);
  });

  it('after a failed write, later groups go to a new segment, so recovery still finds them', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    await wal.append([entry('s', 0, 'L0')]);
    closeSync(segmentFd(dir)); // fault injection: the descriptor closed behind the WAL's back
    await expect(wal.append([entry('s', 1, 'L1')])).rejects.toThrow(/EBADF/);
    await wal.append([entry('s', 1, 'L1')]);
    await wal.close();
    expect(readdirSync(dir).filter((f) => f.startsWith('wal-'))).toHaveLength(2);
    expect(recovered(dir)).toEqual(['L0', 'L1']);
  });

  it('closes a segment past segmentBytes; a rolled segment is read back alone, cut where the next one starts over', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir, 100);
    await wal.append([entry('s', 0, 'L0', 0), entry('s', 1, 'L1', 1), entry('s', 2, 'L2', 2)]);
    await wal.append([entry('s', 3, 'L3', 3)]);
    // After a failed report of leaf 3 the log wrote it again (another record) in the next segment.
    await wal.append([entry('s', 3, 'R3', 3), entry('s', 4, 'R4', 4)]);
    await wal.close();
    const files = walFiles(dir);
    expect(files.list(99)).toEqual([1, 2, 3]);
    expect(files.read(1).entries.map(tagOf)).toEqual(['L0', 'L1', 'L2']);
    expect(files.read(2).entries.map(tagOf)).toEqual([]);
    expect(files.read(3).entries.map(tagOf)).toEqual(['R3', 'R4']);
    expect(recovered(dir)).toEqual(['L0', 'L1', 'L2', 'R3', 'R4']);
  });

  it('drops committed segments and continues numbering after a restart', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const a = new FileWal(dir);
    await a.append([entry('s', 0, 'L0')]);
    walFiles(dir).drop(a.roll());
    await a.append([entry('s', 1, 'L1')]);
    await a.close();
    const b = new FileWal(dir);
    await b.append([entry('s', 2, 'L2')]);
    await b.close();
    expect(
      readdirSync(dir)
        .filter((f) => f.startsWith('wal-'))
        .sort(),
    ).toEqual(['wal-2.log', 'wal-3.log']);
    expect(recovered(dir)).toEqual(['L1', 'L2']);
  });
});

describe('recoverEntries', () => {
  const text = (...es: WalEntry[]) =>
    es.map((e) => `${e.hash}\t${e.seq}\t${JSON.stringify(e.stream)}\t${e.line}\n`).join('');

  it('when a stream is rewritten from an earlier seq (after a failed write), the later entries win', () => {
    // Segment 1 holds s:0..2 and t:0; the write of s:2 failed after landing, and s was rewritten from s:1 in segment 2.
    const first = text(
      entry('s', 0, 'S0', 0),
      entry('s', 1, 'S1', 1),
      entry('t', 0, 'T0', 2),
      entry('s', 2, 'S2-failed', 3),
    );
    const second = text(entry('s', 2, 'S2', 3), entry('s', 3, 'S3', 4), entry('t', 1, 'T1', 5));
    expect(
      recoverEntries([
        { name: 'wal-1.log', text: first },
        { name: 'wal-2.log', text: second },
      ]).entries.map(tagOf),
    ).toEqual(['S0', 'S1', 'T0', 'S2', 'S3', 'T1']);
  });
});

/** The descriptor this process holds on the WAL's open segment in `dir` (found through /proc). */
function segmentFd(dir: string): number {
  const seg = path.join(dir, readdirSync(dir).find((f) => f.startsWith('wal-'))!);
  const fd = readdirSync('/proc/self/fd')
    .map(Number)
    .find((n) => {
      try {
        return readlinkSync(`/proc/self/fd/${n}`) === seg;
      } catch {
        return false;
      }
    });
  if (fd === undefined) throw new Error(`no descriptor open on ${seg}`);
  return fd;
}

describe("the sealer on the event loop over a FileWal, signing on the log key's own thread", () => {
  it('chains, signs and durably writes what the log numbers; a restart continues every stream from the WAL', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-sealer-'));
    const open = (tails: Map<string, StreamTail>) =>
      new AuditLog(
        () => loopSealer(sealerTree(root, { origin: ORIGIN, key: logKey }), new FileWal(root)),
        (s) => tails.get(s),
      );
    const log = open(new Map());
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        log.append(`s${i % 7}`, { type: i % 2 === 0 ? 'decision' : 'response' }, { defer: i % 2 === 0 }),
      ),
    );
    expect(log.status()).toMatchObject({ healthy: true, appended: 200, uncommitted: 200 });
    // The log signs a checkpoint over every durable record when it closes; no record is signed.
    const checkpoint = await log.close();
    expect(openCheckpoint(checkpoint!, [verifierOf(ORIGIN, logKey)], ORIGIN).size).toBe(200);
    const { entries } = walFiles(root).recover();
    expect(entries).toHaveLength(200);
    const tails = new Map<string, StreamTail>();
    for (const e of entries) {
      const p = rec(e.line);
      expect(p.seq).toBe((tails.get(e.stream)?.seq ?? -1) + 1);
      expect(p.prev).toBe(tails.get(e.stream)?.hash ?? null);
      expect(p.leaf).toBe(entries.indexOf(e));
      expect(Object.keys(p)).not.toContain('jws');
      tails.set(e.stream, { seq: e.seq, hash: e.hash });
    }
    const again = open(tails);
    await again.append('s0', { type: 'response' });
    await again.close();
    const last = walFiles(root)
      .recover()
      .entries.filter((e) => e.stream === 's0')
      .at(-1)!;
    expect(rec(last.line)).toMatchObject({ seq: tails.get('s0')!.seq + 1, prev: tails.get('s0')!.hash });
  });

  it('a write that fails fails its records and makes the log unhealthy; the chains go on from the last durable records', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-sealer-'));
    const log = new AuditLog(
      () => loopSealer(sealerTree(root, { origin: ORIGIN, key: logKey }), new FileWal(root)),
      () => undefined,
    );
    await Promise.all([log.append('a', { type: 'decision' }), log.append('b', { type: 'decision' })]);
    closeSync(segmentFd(root)); // fault injection: the sealer's descriptor closed behind its back
    const failed = [log.append('a', { type: 'response' }), log.append('a', { type: 'decision' })];
    await expect(failed[0]).rejects.toThrow(/Audit log unavailable: EBADF/);
    await expect(failed[1]).rejects.toBeInstanceOf(GatewayError);
    expect(() => log.assertWritable()).toThrow(/Audit log unavailable/);
    await Promise.all([log.append('a', { type: 'response' }), log.append('b', { type: 'response' })]);
    expect(log.status().healthy).toBe(true);
    await log.close();
    const byStream = (s: string) =>
      walFiles(root)
        .recover()
        .entries.filter((e) => e.stream === s);
    for (const s of ['a', 'b']) {
      const es = byStream(s);
      expect(es.map((e) => e.seq)).toEqual([0, 1]);
      expect(rec(es[1]!.line).prev).toBe(es[0]!.hash);
    }
  });
});

describe('the sealer stops only between writes', () => {
  it("close is answered once the latest checkpoint's file is written: the thread is never stopped in the middle of that write", async () => {
    const tree = testTree();
    let release!: () => void;
    const writing = new Promise<void>((r) => (release = r));
    const slowTree = { ...tree, idle: () => writing };
    const log = new AuditLog(
      () => loopSealer(slowTree, new MemoryWal()),
      () => undefined,
    );
    await log.append('s', { type: 'decision' });
    let closed = false;
    const closing = log.close().then(() => (closed = true));
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(closed).toBe(true);
  });
});

/** A WAL whose writes complete only when the test says: each append waits for release(). */
class HeldWal implements WriteAheadLog {
  readonly groups: string[][] = [];
  readonly #pending: { resolve: () => void; reject: (err: Error) => void }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  append(entries: readonly WalEntry[]): Promise<void> {
    this.groups.push(entries.map((e) => `${e.stream}:${e.seq}`));
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) =>
      this.#pending.push({
        resolve: () => {
          this.inFlight--;
          resolve();
        },
        reject: (err) => {
          this.inFlight--;
          reject(err);
        },
      }),
    );
  }
  release(err?: Error): void {
    const p = this.#pending.shift();
    if (p === undefined) throw new Error('no write in flight');
    if (err === undefined) p.resolve();
    else p.reject(err);
  }
  roll() {
    return 0;
  }
  async close() {}
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('the sealer on the event loop', () => {
  it('has one write in flight; what is sealed meanwhile, over several turns, is the next group, written as soon as it ends', async () => {
    const wal = new HeldWal();
    const log = logOver(wal);
    const first = log.append('a', { type: 'decision' });
    await turns(3);
    expect(wal.groups).toEqual([['a:0']]);
    const later = [log.append('b', { type: 'decision' })];
    await turns(2);
    later.push(log.append('c', { type: 'decision' }), log.append('a', { type: 'response' }));
    await turns(3);
    // The loop went on while the write was held; nothing else was written yet.
    expect(wal.groups).toEqual([['a:0']]);
    wal.release();
    await first;
    await turns(3);
    expect(wal.groups).toEqual([['a:0'], ['b:0', 'c:0', 'a:1']]);
    expect(wal.maxInFlight).toBe(1);
    wal.release();
    await Promise.all(later);
    expect(log.status()).toMatchObject({ healthy: true, appended: 4, walWrites: 2 });
  });

  it('a failed write fails the group gathered behind it too (it chains to the failed records); the streams go on from their durable records', async () => {
    const wal = new HeldWal();
    const log = logOver(wal);
    const first = log.append('a', { type: 'decision' });
    await turns(2);
    wal.release();
    await first;
    const failing = log.append('a', { type: 'response' }).catch((e: unknown) => e);
    await turns(3);
    const behind = log.append('a', { type: 'decision' }).catch((e: unknown) => e);
    await turns(3);
    wal.release(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }));
    expect(await failing).toBeInstanceOf(GatewayError);
    expect(String(await behind)).toMatch(/Audit log unavailable: EIO/);
    // Only the one group was written before the failure, none behind it.
    expect(wal.groups).toEqual([['a:0'], ['a:1']]);
    const next = log.append('a', { type: 'response' });
    await turns(3);
    expect(wal.groups.at(-1)).toEqual(['a:1']);
    wal.release();
    await next;
    expect(log.status().healthy).toBe(true);
  });
});

describe("the log key's own thread", () => {
  it('signs checkpoint notes the log verifier opens, and reports a note it cannot sign without stopping', async () => {
    const signing = threadSigning({ origin: ORIGIN, key: logKey });
    try {
      const note = await signing.sign(`${ORIGIN}\n0\n${Buffer.alloc(32).toString('base64')}\n`);
      expect(openCheckpoint(note, [verifierOf(ORIGIN, logKey)], ORIGIN).size).toBe(0);
      await expect(signing.sign('no newline at the end')).rejects.toThrow(
        /signing the checkpoint failed: a note text ends with a newline/,
      );
      const again = await signing.sign(`${ORIGIN}\n1\n${Buffer.alloc(32, 1).toString('base64')}\n`);
      expect(openCheckpoint(again, [verifierOf(ORIGIN, logKey)], ORIGIN).size).toBe(1);
    } finally {
      await signing.close();
    }
  });
});
