import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseLine, signRecord } from '../../src/audit/record.js';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import { buildAuditRepo, newAuditKey, newSigner } from '../helpers/audit-repo.js';
import { gitgate } from '../helpers/cli.js';

const A = 'sessions/2026-11-26/aaaaaaaa-0000-4000-8000-000000000001';
const B = 'sessions/2026-11-26/bbbbbbbb-0000-4000-8000-000000000002';

describe('gitgate audit verify catches tampering and names it', () => {
  let pristine: string;
  const key = newAuditKey('test-key');
  const signer = key.signer;
  beforeAll(async () => {
    pristine = await buildAuditRepo({ [A]: 6, [B]: 4 }, key);
  });

  const copy = () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-tamper-')), 'audit');
    cpSync(pristine, dir, { recursive: true });
    return dir;
  };
  const file = (repo: string, stream: string) => path.join(repo, 'streams', `${stream}.jsonl`);
  const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n');
  const write = (f: string, ls: string[]) => writeFileSync(f, `${ls.join('\n')}\n`);

  it('passes on the untouched repo', async () => {
    const r = await verifyAuditRepo(pristine);
    expect(r).toMatchObject({ ok: true, streams: 2, records: 10, checkpoints: 2, commits: 2 });
    expect(r.head?.seq).toBe(1);
  });

  it.each([
    [
      'one byte of a record edited',
      (repo: string) => {
        const f = file(repo, A);
        const ls = lines(f);
        ls[2] = ls[2]!.replace('"sub":"alice"', '"sub":"alicf"');
        write(f, ls);
      },
      /streams\/sessions\/2026-11-26\/aaaaaaaa-0000-4000-8000-000000000001\.jsonl:3/,
      /signature does not verify/,
    ],
    [
      'a byte that breaks the JSON',
      (repo: string) => {
        const f = file(repo, A);
        const ls = lines(f);
        ls[1] = ls[1]!.slice(0, -1);
        write(f, ls);
      },
      /aaaaaaaa.*\.jsonl:2/,
      /unreadable record/,
    ],
    [
      'a record deleted',
      (repo: string) => {
        const f = file(repo, A);
        const ls = lines(f);
        ls.splice(2, 1);
        write(f, ls);
      },
      /aaaaaaaa.*\.jsonl:3/,
      /expected seq 2, found 3/,
    ],
    [
      'two records reordered',
      (repo: string) => {
        const f = file(repo, B);
        const ls = lines(f);
        [ls[1], ls[2]] = [ls[2]!, ls[1]!];
        write(f, ls);
      },
      /bbbbbbbb.*\.jsonl:2/,
      /expected seq 1, found 2/,
    ],
    [
      'the tail truncated',
      (repo: string) => {
        const f = file(repo, A);
        write(f, lines(f).slice(0, 4));
      },
      /checkpoints\.jsonl:2/,
      /stream sessions\/2026-11-26\/aaaaaaaa-0000-4000-8000-000000000001 was truncated: checkpoint says seq 5, the file ends at 3/,
    ],
    [
      'a whole file replaced by a validly signed file of another stream',
      (repo: string) => {
        cpSync(file(repo, B), file(repo, A));
      },
      /aaaaaaaa.*\.jsonl:1/,
      /record belongs to stream sessions\/2026-11-26\/bbbbbbbb-0000-4000-8000-000000000002/,
    ],
    [
      'a record re-signed with an unknown key',
      (repo: string) => {
        const f = file(repo, A);
        const ls = lines(f);
        ls[5] = signRecord(newSigner('rogue-key'), parseLine(ls[5]!).record);
        write(f, ls);
      },
      /aaaaaaaa.*\.jsonl:6/,
      /signed with unknown key rogue-key/,
    ],
    [
      'a record signed with the real key that does not match the record schema',
      (repo: string) => {
        const f = file(repo, A);
        const ls = lines(f);
        const r = parseLine(ls[5]!).record;
        ls[5] = signRecord(signer, { ...r, data: { ...r.data, allow: 'yes' } });
        write(f, ls);
      },
      /aaaaaaaa.*\.jsonl:6/,
      /does not match schemas\/audit-record\.schema\.json \(data\.allow: must be boolean/,
    ],
    [
      'the checkpoints removed',
      (repo: string) => rmSync(path.join(repo, 'checkpoints.jsonl')),
      /checkpoints\.jsonl/,
      /missing/,
    ],
  ])('%s', async (_name, tamper, where, why) => {
    const repo = copy();
    tamper(repo);
    const r = await verifyAuditRepo(repo);
    expect(r.ok).toBe(false);
    expect(r.error!.where).toMatch(where);
    expect(r.error!.why).toMatch(why);
  });

  it('history rewritten in git (a committed deletion, even if put back) is caught', async () => {
    const repo = copy();
    const f = file(repo, B);
    const original = lines(f);
    const git = simpleGit(repo);
    write(f, original.slice(0, 2));
    await git.add(['-A']).commit('oops');
    write(f, original);
    await git.add(['-A']).commit('put back');
    const r = await verifyAuditRepo(repo);
    expect(r.ok).toBe(false);
    expect(r.error!.why).toMatch(
      /removes 2 line\(s\) from streams\/sessions\/2026-11-26\/bbbbbbbb.*history was rewritten/,
    );
  });

  it('the CLI exits non-zero naming the first broken record', async () => {
    const repo = copy();
    const f = file(repo, A);
    const ls = lines(f);
    ls.splice(1, 1);
    write(f, ls);
    const bad = await gitgate(['audit', 'verify', repo]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /FAILED at streams\/sessions\/2026-11-26\/aaaaaaaa-0000-4000-8000-000000000001\.jsonl:2: expected seq 1, found 2/,
    );
    const good = await gitgate(['audit', 'verify', pristine]);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/^ok: 10 record\(s\) in 2 stream\(s\), 2 checkpoint\(s\), 2 commit\(s\)/);
  });
});
