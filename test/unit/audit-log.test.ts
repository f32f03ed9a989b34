import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { appendFileSync, closeSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { auditSigner, hashLine, parseLine } from '../../src/audit/record.js';
import { FileWal, type WalEntry, type WriteAheadLog } from '../../src/audit/wal.js';
import { GatewayError } from '../../src/errors.js';

const signer = auditSigner('k', createPrivateKey(generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' })));

/** An in-memory WAL that can be made to fail. */
class MemoryWal implements WriteAheadLog {
  entries: WalEntry[] = [];
  batches = 0;
  failing: Error | undefined;
  async append(entries: readonly WalEntry[]) {
    await new Promise((r) => setImmediate(r));
    if (this.failing) throw this.failing;
    this.batches++;
    this.entries.push(...entries);
  }
  async roll() {
    return 0;
  }
  drop() {}
  recover() {
    return [...this.entries];
  }
  async close() {}
}

describe('AuditLog', () => {
  it('chains each stream with gap-free seq and prev = hash of the previous line', async () => {
    const wal = new MemoryWal();
    const log = new AuditLog(wal, signer, () => undefined);
    await Promise.all([log.append('a', { type: 'decision' }), log.append('b', { type: 'decision' }), log.append('a', { type: 'response' })]);
    const a = wal.entries.filter((e) => e.stream === 'a');
    expect(a.map((e) => e.seq)).toEqual([0, 1]);
    expect(parseLine(a[1]!.line).record.prev).toBe(hashLine(a[0]!.line));
    expect(parseLine(a[0]!.line).record.prev).toBeNull();
  });

  it('group-commits: many appends in one tick become few WAL writes', async () => {
    const wal = new MemoryWal();
    const log = new AuditLog(wal, signer, () => undefined);
    await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(`s${i % 3}`, { type: 'decision' })));
    expect(wal.entries).toHaveLength(100);
    expect(wal.batches).toBeLessThanOrEqual(2);
    expect(log.status()).toMatchObject({ healthy: true, appended: 100, uncommitted: 100 });
  });

  it('group-commits with a WAL that flushes synchronously (FileWal on a fast disk): one write for the whole tick', async () => {
    const sizes: number[] = [];
    const syncWal: WriteAheadLog = {
      append: async (entries) => {
        sizes.push(entries.length);
      },
      roll: async () => 0,
      drop: () => undefined,
      recover: () => [],
      close: async () => undefined,
    };
    const log = new AuditLog(syncWal, signer, () => undefined);
    await Promise.all(Array.from({ length: 16 }, (_, i) => log.append(`s${i}`, { type: 'response' })));
    expect(sizes).toEqual([16]);
  });

  it('continues a stream from its stored tail', async () => {
    const wal = new MemoryWal();
    const log = new AuditLog(wal, signer, (s) => (s === 'old' ? { seq: 41, hash: 'h41' } : undefined));
    await log.append('old', { type: 'decision' });
    expect(parseLine(wal.entries[0]!.line).record).toMatchObject({ seq: 42, prev: 'h41' });
  });

  it('fails closed when the WAL cannot be written, and recovers its chain when it can', async () => {
    const wal = new MemoryWal();
    const log = new AuditLog(wal, signer, () => undefined);
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
    expect(wal.entries.map((e) => parseLine(e.line).record.seq)).toEqual([0, 1]);
    expect(parseLine(wal.entries[1]!.line).record.prev).toBe(hashLine(wal.entries[0]!.line));
    expect(log.status().healthy).toBe(true);
  });
});

describe('AuditLog.evict', () => {
  it('drops chain state of least recently used streams, but only those already stored', async () => {
    const wal = new MemoryWal();
    const stored = new Map<string, { seq: number; hash: string }>();
    const log = new AuditLog(wal, signer, (s) => stored.get(s));
    for (const s of ['a', 'b', 'c']) await log.append(s, { type: 'decision' });
    // Only b's record reached the store.
    stored.set('b', { seq: 0, hash: hashLine(wal.entries.find((e) => e.stream === 'b')!.line) });
    log.evict(1, (s, seq) => (stored.get(s)?.seq ?? -1) >= seq);
    // a is not stored, so it stays; b is evicted and continues from the store without a gap.
    await log.append('b', { type: 'response' });
    await log.append('a', { type: 'response' });
    const b = wal.entries.filter((e) => e.stream === 'b').map((e) => parseLine(e.line).record);
    expect(b.map((r) => r.seq)).toEqual([0, 1]);
    expect(b[1]!.prev).toBe(stored.get('b')!.hash);
    expect(wal.entries.filter((e) => e.stream === 'a').map((e) => parseLine(e.line).record.seq)).toEqual([0, 1]);
  });
});

const entry = (stream: string, seq: number, line: string): WalEntry => ({ stream, seq, line, hash: hashLine(line) });

describe('FileWal', () => {
  it('recovers intact entries across segments and discards a torn tail', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    await wal.append([entry('s', 0, 'L0')]);
    await wal.roll();
    await wal.append([entry('s', 1, 'L1'), entry('t', 0, 'T0')]);
    await wal.close();
    const seg = path.join(dir, 'wal-2.log');
    appendFileSync(seg, `${hashLine('L2')}\t2\t"s"\tL`);
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L0', 'L1', 'T0']);
    // A flipped checksum also ends the segment.
    writeFileSync(seg, readFileSync(seg, 'utf8').replace('\tT0', '\tTX'));
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L0', 'L1']);
  });

  it('flushes on the event loop while the disk is fast, and on the thread pool for a while after a slow flush', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    let clock = 1_000;
    let step = 0;
    // Every reading of the clock advances it by `step` ms: a flush then "takes" `step` ms.
    const wal = new FileWal(dir, { slowFlushMs: 10, now: () => (clock += step) });
    await wal.append([entry('s', 0, 'L0')]);
    expect(wal.flushingAsync).toBe(false);
    step = 25;
    await wal.append([entry('s', 1, 'L1')]);
    expect(wal.flushingAsync).toBe(true);
    step = 0;
    await wal.append([entry('s', 2, 'L2')]); // on the thread pool, durable all the same
    clock += 10_001;
    expect(wal.flushingAsync).toBe(false);
    await wal.append([entry('s', 3, 'L3')]);
    await wal.close();
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L0', 'L1', 'L2', 'L3']);
  });

  it('writes into a preallocated spare segment; recovery stops at the zeros after the last entry', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    expect(await wal.spareReady()).toBe(true);
    await wal.append([entry('s', 0, 'L0'), entry('s', 1, 'L1')]);
    const seg = path.join(dir, readdirSync(dir).find((f) => f.startsWith('wal-'))!);
    expect(statSync(seg).size).toBe(256 * 1024); // written in place: the file did not grow
    await wal.append([entry('s', 2, 'L2')]);
    await wal.roll();
    await wal.spareReady();
    await wal.append([entry('t', 0, 'T0')]);
    await wal.close();
    expect(readdirSync(dir).filter((f) => f.endsWith('.spare'))).toEqual([]);
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L0', 'L1', 'L2', 'T0']);
  });

  it('after a failed write, later groups go to a new segment, so recovery still finds them', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const wal = new FileWal(dir);
    await wal.append([entry('s', 0, 'L0')]);
    // Fault injection: close the segment's descriptor behind the WAL's back (found through /proc).
    const seg = path.join(dir, readdirSync(dir).find((f) => f.startsWith('wal-'))!);
    const fd = readdirSync('/proc/self/fd').map(Number).find((n) => {
      try {
        return readlinkSync(`/proc/self/fd/${n}`) === seg;
      } catch {
        return false;
      }
    });
    expect(fd).toBeDefined();
    closeSync(fd!);
    await expect(wal.append([entry('s', 1, 'L1')])).rejects.toThrow();
    await wal.append([entry('s', 1, 'L1')]);
    await wal.close();
    expect(readdirSync(dir).filter((f) => f.startsWith('wal-'))).toHaveLength(2);
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L0', 'L1']);
  });

  it('drops committed segments and continues numbering after a restart', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-wal-'));
    const a = new FileWal(dir);
    await a.append([entry('s', 0, 'L0')]);
    const closed = await a.roll();
    a.drop(closed);
    await a.append([entry('s', 1, 'L1')]);
    await a.close();
    expect(new FileWal(dir).recover().map((e) => e.line)).toEqual(['L1']);
  });
});
