import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { leafHashHex, recordParts, recordText } from '../../src/audit/record.js';
import { CHECKPOINT_FILE, LOG_KEY_FILE } from '../../src/audit/store.js';
import { Frontier } from '../../src/audit/tlog/merkle.js';
import { noteSigner, signCheckpoint } from '../../src/audit/tlog/note.js';
import { NO_CHECKPOINT_WARNING, verifyAuditRepo } from '../../src/audit/verify.js';
import { gitText } from '../../src/git/run.js';
import { type AuditKey, decisionEvent, newAuditKey, openTrail } from '../helpers/audit-repo.js';
import { gitgate } from '../helpers/cli.js';

const A = 'sessions/2026-11-26/aaaaaaaa-0000-4000-8000-000000000001';
const B = 'sessions/2026-11-26/bbbbbbbb-0000-4000-8000-000000000002';

/** Records written through the real log, WAL, store and committer: `rounds` commits of `perRound` records per stream. */
async function build(root: string, key: AuditKey, rounds: number, perRound: number): Promise<string> {
  const t = await openTrail(root, key);
  let n = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < perRound; i++) {
      await t.log.append(A, decisionEvent(`x${n++}`));
      await t.log.append(B, decisionEvent(`x${n++}`));
    }
    await t.committer.commit();
  }
  await t.log.close();
  return path.join(root, 'audit');
}

describe('gitgate audit verify: only the given key, only a log that extends a saved checkpoint', () => {
  const key = newAuditKey('tamper');
  const attacker = newAuditKey('tamper'); // same name, another key: what an attacker with repo write access can make
  let pristine = '';
  /** The checkpoint an auditor saved once the repo held everything (10 records). */
  let saved = '';
  /** The checkpoint of the first commit (6 records). */
  let early = '';

  beforeAll(async () => {
    pristine = await build(mkdtempSync(path.join(tmpdir(), 'gitgate-tamper-')), key, 2, 3);
    saved = readFileSync(path.join(pristine, CHECKPOINT_FILE), 'utf8');
    early = await gitText(pristine, ['show', `HEAD~1:${CHECKPOINT_FILE}`]);
  });

  const copy = () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-tamper-')), 'audit');
    cpSync(pristine, dir, { recursive: true });
    return dir;
  };
  const file = (repo: string, stream: string) => path.join(repo, 'streams', `${stream}.jsonl`);
  const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n');
  const write = (f: string, ls: string[]) => writeFileSync(f, `${ls.join('\n')}\n`);
  /** The attacker commits what they changed: the work tree is HEAD again. */
  const commit = async (repo: string, msg = 'tamper') => {
    await gitText(repo, ['add', '-A']);
    await gitText(repo, ['commit', '-q', '-m', msg]);
  };
  const verify = (repo: string, opts: { keys?: AuditKey[]; checkpoint?: string } = {}) =>
    verifyAuditRepo(repo, {
      keys: (opts.keys ?? [key]).map((k) => k.verifier),
      ...(opts.checkpoint !== undefined ? { checkpoint: opts.checkpoint } : {}),
    });

  it('passes on the untouched repo, and says what it cannot show without a saved checkpoint', async () => {
    const r = await verify(pristine);
    expect(r).toMatchObject({ ok: true, format: 2, streams: 2, records: 12, checkpoint: { size: 12 } });
    expect(r.warnings).toEqual([NO_CHECKPOINT_WARNING]);
    const withSaved = await verify(pristine, { checkpoint: early });
    expect(withSaved).toMatchObject({ ok: true, warnings: [] });
  });

  it.each([
    [
      'one byte of a record edited (the last of its stream)',
      (repo: string) => {
        const ls = lines(file(repo, A));
        ls[ls.length - 1] = ls.at(-1)!.replace('"x', '"y');
        write(file(repo, A), ls);
      },
      { where: 'checkpoint', why: /tree hash differs from the signed one: records were altered/ },
    ],
    [
      'one byte of a record edited (in the middle of its stream)',
      (repo: string) => {
        const ls = lines(file(repo, A));
        ls[1] = ls[1]!.replace('"x', '"y');
        write(file(repo, A), ls);
      },
      { where: `streams/${A}.jsonl:3`, why: /prev does not match the leaf hash of the record before it/ },
    ],
    [
      'a record deleted',
      (repo: string) => write(file(repo, A), lines(file(repo, A)).toSpliced(2, 1)),
      { where: `streams/${A}.jsonl:3`, why: /expected seq 2, found 3: a record was removed/ },
    ],
    [
      'two records swapped',
      (repo: string) => {
        const ls = lines(file(repo, A));
        write(file(repo, A), [ls[1]!, ls[0]!, ...ls.slice(2)]);
      },
      { where: `streams/${A}.jsonl:1`, why: /expected seq 0, found 1/ },
    ],
    [
      'the tail of a stream cut',
      (repo: string) => write(file(repo, B), lines(file(repo, B)).slice(0, -2)),
      { where: 'leaf 9', why: /no record holds this leaf: a record was removed/ },
    ],
    [
      'two stream files swapped',
      (repo: string) => {
        const a = readFileSync(file(repo, A));
        writeFileSync(file(repo, A), readFileSync(file(repo, B)));
        writeFileSync(file(repo, B), a);
      },
      { where: `streams/${A}.jsonl:1`, why: new RegExp(`belongs to stream ${B}, not ${A}: the file was replaced`) },
    ],
    [
      'a whole stream removed',
      (repo: string) => rmSync(file(repo, B)),
      { where: 'leaf 1', why: /no record holds this leaf: a record was removed/ },
    ],
  ])('%s, committed: caught and named', async (_name, tamper, want) => {
    const repo = copy();
    tamper(repo);
    await commit(repo);
    const r = await verify(repo, { checkpoint: saved });
    expect(r.ok).toBe(false);
    expect(r.error?.where).toBe(want.where);
    expect(r.error?.why).toMatch(want.why);
  });

  it('a key added to the repo, a forged record and a checkpoint signed by that key: rejected, naming the key', async () => {
    const repo = copy();
    const ls = lines(file(repo, A));
    const last = JSON.parse(ls.at(-1)!) as { seq: number };
    const forged = recordText(
      recordParts(A, last.seq + 1, '2026-11-26T13:00:00.000Z', decisionEvent('forged')),
      leafHashHex(ls.at(-1)!),
      12,
    );
    write(file(repo, A), [...ls, forged]);
    // The attacker's tree: every leaf in order, theirs last, signed with their key; their key published in the repo.
    const leaves: string[] = [];
    for (const s of [A, B])
      for (const l of lines(file(repo, s))) leaves[(JSON.parse(l) as { leaf: number }).leaf] = leafHashHex(l);
    const f = new Frontier();
    for (const h of leaves) f.append(Buffer.from(h, 'hex'));
    writeFileSync(
      path.join(repo, CHECKPOINT_FILE),
      signCheckpoint(
        { origin: attacker.origin, size: 13, root: f.root(), extensions: [] },
        noteSigner(attacker.origin, attacker.key),
      ),
    );
    writeFileSync(path.join(repo, LOG_KEY_FILE), `${attacker.verifier.text}\n`);
    await commit(repo);
    const r = await verify(repo);
    expect(r.error?.where).toBe('checkpoint');
    expect(r.error?.why).toBe(
      `signed only by keys not given: ${attacker.verifier.text.split('+').slice(0, 2).join('+')}`,
    );
    // The attacker's key is informational only: with it given, the repo would verify; with the real one it never does.
    expect((await verify(repo, { keys: [attacker] })).ok).toBe(true);
    expect((await verify(repo, { keys: [attacker], checkpoint: saved })).error).toMatchObject({
      where: '--checkpoint',
      why: expect.stringMatching(/signed only by keys not given/),
    });
  });

  it('git reset --hard HEAD~1: a valid older log; only the saved checkpoint shows it', async () => {
    const repo = copy();
    await gitText(repo, ['reset', '-q', '--hard', 'HEAD~1']);
    const without = await verify(repo);
    expect(without.ok).toBe(true);
    expect(without.warnings).toContain(NO_CHECKPOINT_WARNING);
    const r = await verify(repo, { checkpoint: saved });
    expect(r.error).toEqual({
      where: '--checkpoint',
      why: 'the saved checkpoint covers 12 record(s), the repo only 6: records were removed (history cut or rewritten)',
    });
  });

  it('an orphan history holding an older tree: caught against the saved checkpoint', async () => {
    const repo = copy();
    await gitText(repo, ['checkout', '-q', '--orphan', 'rewritten', 'HEAD~1']);
    await gitText(repo, ['commit', '-q', '-m', 'fresh history']);
    await gitText(repo, ['branch', '-q', '-D', 'main']);
    await gitText(repo, ['branch', '-q', '-m', 'main']);
    expect((await gitText(repo, ['rev-list', '--count', 'HEAD'])).trim()).toBe('1');
    expect((await verify(repo, { checkpoint: saved })).error?.why).toMatch(/covers 12 record\(s\), the repo only 6/);
  });

  it('the whole repo re-signed under a new key with fresh history: rejected by key, and by the saved checkpoint', async () => {
    const fake = await build(mkdtempSync(path.join(tmpdir(), 'gitgate-resigned-')), attacker, 2, 3);
    const r = await verify(fake, { checkpoint: saved });
    expect(r.error?.where).toBe('checkpoint');
    expect(r.error?.why).toMatch(/signed only by keys not given/);
    // Even an auditor who also trusted the attacker's key is saved by the checkpoint kept earlier.
    const both = await verify(fake, { keys: [key, attacker], checkpoint: saved });
    expect(both.error?.where).toBe('--checkpoint');
    expect(both.error?.why).toMatch(/is of log|not the ones the saved checkpoint signed/);
  });

  it('a merge commit whose first parent holds an old tree: HEAD is what is verified, so the cut shows', async () => {
    const repo = copy();
    const old = (await gitText(repo, ['rev-parse', 'HEAD~1^{tree}'])).trim();
    const merge = (
      await gitText(repo, ['commit-tree', old, '-p', 'HEAD~1', '-p', 'HEAD', '-m', 'merge: keep ours'])
    ).trim();
    await gitText(repo, ['reset', '-q', '--hard', merge]);
    expect((await verify(repo, { checkpoint: saved })).error?.why).toMatch(/covers 12 record\(s\), the repo only 6/);
  });

  it('a work tree that differs from HEAD is refused, naming the file', async () => {
    const edited = copy();
    write(file(edited, A), lines(file(edited, A)).slice(0, -1));
    expect((await verify(edited)).error).toEqual({
      where: 'work tree',
      why: `streams/${A}.jsonl differs from HEAD: verify a clean checkout of HEAD (the work tree must be HEAD)`,
    });
    const removed = copy();
    rmSync(file(removed, B));
    expect((await verify(removed)).error?.why).toMatch(
      new RegExp(`streams/${B}.jsonl is in HEAD but not in the work tree`),
    );
    const added = copy();
    writeFileSync(path.join(added, 'streams', 'extra.jsonl'), '');
    expect((await verify(added)).error?.why).toMatch(/streams\/extra.jsonl is in the work tree but not in HEAD/);
  });

  it('bytes that are not UTF-8 where a record held U+FFFD, committed: the leaf is the bytes stored, so the tree shows it', async () => {
    // Decoded, a lone 0xFF reads as U+FFFD (EF BF BD): a reader that hashed the decoded text would see the signed record.
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-tamper-'));
    const t = await openTrail(root, key);
    await t.log.append(A, decisionEvent('\uFFFD'));
    await t.committer.commit();
    await t.log.close();
    const repo = path.join(root, 'audit');
    expect((await verify(repo)).ok).toBe(true);
    const f = file(repo, A);
    const bytes = readFileSync(f);
    const at = bytes.indexOf(Buffer.from('\uFFFD', 'utf8'));
    expect(at).toBeGreaterThan(0);
    writeFileSync(f, Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 3)]));
    expect(readFileSync(f, 'utf8')).toBe(bytes.toString('utf8'));
    await commit(repo);
    expect((await verify(repo)).error).toMatchObject({
      where: 'checkpoint',
      why: expect.stringMatching(/tree hash differs from the signed one: records were altered/),
    });
  });

  it('a symbolic link in the repo is refused unread, naming it: as a record file, as the checkpoint, and in HEAD', async () => {
    // Followed, /dev/zero would take all memory; a link to a copy elsewhere would be read as if it were the repo's.
    const elsewhere = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-tamper-')), 'a.jsonl');
    cpSync(file(pristine, A), elsewhere);
    for (const target of ['/dev/zero', elsewhere]) {
      const repo = copy();
      const part = `streams/${A}~000001.jsonl`;
      symlinkSync(target, path.join(repo, part));
      await commit(repo);
      expect((await verify(repo)).error).toEqual({
        where: part,
        why: 'is a symbolic link in HEAD: an audit repo holds regular files only',
      });
      // A work tree that is not a git checkout is read without HEAD: the link is refused there too.
      rmSync(path.join(repo, '.git'), { recursive: true, force: true });
      expect((await verify(repo)).error).toEqual({
        where: part,
        why: 'is a symbolic link: only regular files are read from this repo',
      });
    }
    const repo = copy();
    rmSync(path.join(repo, CHECKPOINT_FILE));
    symlinkSync('/dev/zero', path.join(repo, CHECKPOINT_FILE));
    await commit(repo);
    const r = await verify(repo);
    expect(r.ok).toBe(false);
    expect(r.error).toEqual({
      where: CHECKPOINT_FILE,
      why: 'is a symbolic link in HEAD: an audit repo holds regular files only',
    });
    rmSync(path.join(repo, '.git'), { recursive: true, force: true });
    expect((await verify(repo)).error).toEqual({
      where: CHECKPOINT_FILE,
      why: 'is a symbolic link: only regular files are read from this repo',
    });
    // A link that only HEAD holds (the work tree has the file itself): what HEAD holds is what is proved.
    const headOnly = copy();
    const cp = readFileSync(path.join(headOnly, CHECKPOINT_FILE));
    rmSync(path.join(headOnly, CHECKPOINT_FILE));
    symlinkSync('/dev/zero', path.join(headOnly, CHECKPOINT_FILE));
    await commit(headOnly);
    rmSync(path.join(headOnly, CHECKPOINT_FILE));
    writeFileSync(path.join(headOnly, CHECKPOINT_FILE), cp);
    expect((await verify(headOnly)).error).toEqual({
      where: CHECKPOINT_FILE,
      why: 'is a symbolic link in HEAD: an audit repo holds regular files only',
    });
  });

  it('no key given: refused (the repo does not choose its own key)', async () => {
    expect((await verifyAuditRepo(pristine, { keys: [] })).error?.where).toBe('--key');
  });

  it('the CLI: --key and --checkpoint, exit 1 naming what is wrong', async () => {
    const repo = copy();
    await gitText(repo, ['reset', '-q', '--hard', 'HEAD~1']);
    const cp = path.join(path.dirname(repo), 'saved.checkpoint');
    writeFileSync(cp, saved);
    const ok = await gitgate(['audit', 'verify', pristine, '--key', key.verifier.text, '--checkpoint', cp]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(
      /^ok: 12 record\(s\) in 2 stream\(s\), tree size 12, root \S+, consistent with the saved checkpoint/,
    );
    const bad = await gitgate(['audit', 'verify', repo, '--key', key.verifier.text, '--checkpoint', cp]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAILED at --checkpoint: the saved checkpoint covers 12 record\(s\), the repo only 6/);
    const warn = await gitgate(['audit', 'verify', repo, '--key', key.verifier.text]);
    expect(warn.code).toBe(0);
    expect(warn.stdout).toContain('warning: no --checkpoint given');
  });
});
