import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { streamsOf } from '../../src/audit/auditor.js';
import { auditLogDirs } from '../../src/audit/branches.js';
import { AuditPusher } from '../../src/audit/pusher.js';
import { ManualClock } from '../helpers/clock.js';

const run = promisify(execFile);
const gitIn = async (dir: string, ...args: string[]) =>
  (
    await run('git', args, {
      cwd: dir,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@x',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@x',
      },
    })
  ).stdout.trim();

const temps: string[] = [];
afterEach(async () => {
  for (const t of temps.splice(0)) await rm(t, { recursive: true, force: true });
});

async function replicaRepo(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-pusher-'));
  temps.push(dir);
  await gitIn(dir, 'init', '-q', '-b', 'main');
  for (const [f, text] of Object.entries(files)) await writeFile(path.join(dir, f), text);
  await gitIn(dir, 'add', '-A');
  await gitIn(dir, 'commit', '-q', '-m', 'one');
  return dir;
}

describe('AuditPusher: a replica pushes its audit repo to its branch of the shared one', () => {
  it('pushes HEAD to replica/<id>; a failed push stays pending, is retried with backoff and then lands', async () => {
    const repo = await replicaRepo({ a: '1\n' });
    const base = await mkdtemp(path.join(tmpdir(), 'gitgate-shared-'));
    temps.push(base);
    const shared = path.join(base, 'audit.git'); // not there yet: the first push fails
    const clock = new ManualClock();
    const warnings: string[] = [];
    const pusher = new AuditPusher(repo, shared, 'r1', (m) => warnings.push(m), clock);

    await pusher.push();
    expect(pusher.status()).toMatchObject({ branch: 'replica/r1', pending: true, pushed: null, failures: 1 });
    expect(pusher.status().lastError).toContain('git push failed');
    expect(warnings[0]).toContain("the commits stay in the replica's audit repo");
    expect(clock.pendingTimers).toBe(1);

    // Still failing: the retry waits twice as long.
    clock.advance(1_000);
    await pusher.idle();
    expect(pusher.status()).toMatchObject({ pending: true, failures: 2 });
    clock.advance(1_999);
    await pusher.idle();
    expect(pusher.status().failures).toBe(2);

    // The shared repo appears; the next retry (no new commit needed) pushes what was committed meanwhile too.
    await gitIn(base, 'init', '-q', '--bare', shared);
    await writeFile(path.join(repo, 'b'), '2\n');
    await gitIn(repo, 'add', '-A');
    await gitIn(repo, 'commit', '-q', '-m', 'two');
    clock.advance(1);
    await pusher.idle();
    const head = await gitIn(repo, 'rev-parse', 'HEAD');
    expect(pusher.status()).toMatchObject({ pending: false, pushed: head, failures: 2, lastError: null });
    expect(await gitIn(shared, 'rev-parse', 'refs/heads/replica/r1')).toBe(head);
    expect(clock.pendingTimers).toBe(0);
    pusher.close();
  });

  it('never forces: a branch holding commits this repo lacks keeps the push failing, and nothing is lost', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'gitgate-shared-'));
    temps.push(base);
    const shared = path.join(base, 'audit.git');
    await gitIn(base, 'init', '-q', '--bare', shared);
    const first = await replicaRepo({ a: '1\n' });
    const p1 = new AuditPusher(first, shared, 'r1', () => undefined, new ManualClock());
    await p1.push();
    const kept = await gitIn(shared, 'rev-parse', 'replica/r1');
    // Another repo (a replaced data dir) under the same replica id.
    const other = await replicaRepo({ z: 'other\n' });
    const p2 = new AuditPusher(other, shared, 'r1', () => undefined, new ManualClock());
    await p2.push();
    expect(p2.status()).toMatchObject({ pending: true, failures: 1 });
    expect(await gitIn(shared, 'rev-parse', 'replica/r1')).toBe(kept);
    p1.close();
    p2.close();
  });
});

describe('reading a shared audit repo', () => {
  it('stands for each of its replica branches, each a work tree of exactly that branch; other repos for themselves', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'gitgate-shared-'));
    temps.push(base);
    const shared = path.join(base, 'audit.git');
    await gitIn(base, 'init', '-q', '--bare', shared);
    const r1 = await replicaRepo({ one: '1\n' });
    const r2 = await replicaRepo({ two: '2\n' });
    for (const [dir, id] of [
      [r1, 'r1'],
      [r2, 'r2'],
    ] as const) {
      const p = new AuditPusher(dir, shared, id, () => undefined, new ManualClock());
      await p.push();
      p.close();
    }
    const { logs, cleanup } = await auditLogDirs([shared, r1]);
    try {
      expect(logs.map((l) => l.name)).toEqual([`${shared} replica/r1`, `${shared} replica/r2`, r1]);
      expect(await gitIn(logs[0]!.dir, 'ls-files')).toBe('one');
      expect(await gitIn(logs[1]!.dir, 'ls-files')).toBe('two');
      expect(await gitIn(logs[1]!.dir, 'status', '--porcelain')).toBe('');
    } finally {
      cleanup();
    }
  });
});

describe('stream names', () => {
  it('carry the replica after the date in multi-replica mode, and are unchanged without one', () => {
    const at = new Date(Date.UTC(2030, 0, 2, 7));
    const one = streamsOf();
    const r = streamsOf('gw-1');
    expect(one.session('abc', at.getTime())).toBe('sessions/2030-01-02/abc');
    expect(r.session('abc', at.getTime())).toBe('sessions/2030-01-02/gw-1/abc');
    expect(r.stateless('gh', at)).toBe('stateless/2030-01-02/gw-1/gh-07');
    expect(r.gateway(at)).toBe('gateway/2030-01-02/gw-1/07');
    expect(one.approval('ap1', '2030-01-02T07:00:00Z')).toBe('approvals/2030-01-02/ap1');
    expect(r.approval('ap1', '2030-01-02T07:00:00Z')).toBe('approvals/2030-01-02/gw-1/ap1');
  });
});
