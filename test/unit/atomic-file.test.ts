import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';

// Which paths were fsynced: openSync and fsyncSync are wrapped to record, and still do the real thing.
const synced: string[] = [];
const opened = new Map<number, string>();
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return {
    ...fs,
    openSync: (p: string, ...rest: unknown[]) => {
      const fd = (fs.openSync as (...a: unknown[]) => number)(p, ...rest);
      opened.set(fd, p);
      return fd;
    },
    fsyncSync: (fd: number) => {
      fs.fsyncSync(fd);
      synced.push(opened.get(fd) ?? `fd ${fd}`);
    },
  };
});

const { appendFileDurableSync, writeFileAtomic, writeFileAtomicSync } = await import('../../src/atomic-file.js');
const { DeliveryLog } = await import('../../src/webhooks/verify-and-receive.js');
const { FileApprovalStore } = await import('../../src/approvals/store.js');

const dir = () => mkdtempSync(path.join(tmpdir(), 'gitgate-atomic-'));

describe('the one atomic file write', () => {
  beforeEach(() => {
    synced.length = 0;
  });

  it('sync: replaces the content whole, with the mode asked, fsyncing the temp file and then the directory', () => {
    const d = dir();
    const file = path.join(d, 'a.json');
    writeFileSync(file, 'old');
    writeFileAtomicSync(file, 'new content', { mode: 0o600 });
    expect(readFileSync(file, 'utf8')).toBe('new content');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(d)).toEqual(['a.json']);
    expect(synced).toHaveLength(2);
    expect(synced[0]).toMatch(/a\.json\.[0-9a-f]{8}\.tmp$/);
    expect(synced[1]).toBe(d);
  });

  it('sync, exclusive: refuses to replace a file that exists, and leaves no temp file behind', () => {
    const d = dir();
    const file = path.join(d, 'k.json');
    writeFileAtomicSync(file, 'first', { exclusive: true });
    expect(() => writeFileAtomicSync(file, 'second', { exclusive: true })).toThrow(/EEXIST/);
    expect(readFileSync(file, 'utf8')).toBe('first');
    expect(readdirSync(d)).toEqual(['k.json']);
  });

  it('async: same contract (the directory is synced through a file handle)', async () => {
    const d = dir();
    const file = path.join(d, 'b.json');
    await writeFileAtomic(file, 'one');
    await writeFileAtomic(file, 'two');
    expect(readFileSync(file, 'utf8')).toBe('two');
    expect(readdirSync(d)).toEqual(['b.json']);
    await expect(writeFileAtomic(file, 'three', { exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readdirSync(d)).toEqual(['b.json']);
  });

  it('a durable append fsyncs every line, and the directory when it created the file', () => {
    const d = dir();
    const file = path.join(d, 'log');
    appendFileDurableSync(file, 'a\n');
    expect(synced).toEqual([file, d]);
    appendFileDurableSync(file, 'b\n');
    expect(synced).toEqual([file, d, file]);
    expect(readFileSync(file, 'utf8')).toBe('a\nb\n');
    expect(existsSync(`${file}.tmp`)).toBe(false);
  });

  it('the webhook delivery log is durable before a delivery counts as handled, and after compaction', () => {
    const d = dir();
    const log = new DeliveryLog(d, 4);
    log.add('d-1');
    expect(synced).toContain(path.join(d, 'github-deliveries.log'));
    for (let i = 2; i <= 8; i++) log.add(`d-${i}`);
    // The newest 4 are remembered (the bounded cache), the file keeps growing up to twice that.
    expect(['d-4', 'd-5', 'd-6', 'd-7', 'd-8'].map((id) => log.has(id))).toEqual([false, true, true, true, true]);
    expect(readFileSync(path.join(d, 'github-deliveries.log'), 'utf8').split('\n')).toHaveLength(9);
    log.add('d-9');
    // Compacted to the ids remembered, atomically: a replay after a restart is still a replay.
    expect(readFileSync(path.join(d, 'github-deliveries.log'), 'utf8')).toBe('d-6\nd-7\nd-8\nd-9\n');
    expect(synced.at(-1)).toBe(d);
    const reloaded = new DeliveryLog(d, 4);
    expect(['d-5', 'd-6', 'd-9'].map((id) => reloaded.has(id))).toEqual([false, true, true]);
    expect(readdirSync(d)).toEqual(['github-deliveries.log']);
  });

  it('the approvals store writes through it: a temp file beside the record is never loaded', () => {
    const d = dir();
    const store = new FileApprovalStore(d);
    const a = { id: 'ap-1', status: 'pending' } as unknown as Parameters<typeof store.put>[0];
    store.put(a);
    expect(synced.at(-1)).toBe(d);
    writeFileSync(path.join(d, 'ap-2.json.0badf00d.tmp'), '{"id":"ap-2"');
    expect(new FileApprovalStore(d).all().map((x) => x.id)).toEqual(['ap-1']);
  });
});
