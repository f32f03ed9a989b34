import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashFile } from '../../src/audit/tlog/hash-file.js';
import { consistencyProof, inclusionProof, leafHash, type SubtreeReader } from '../../src/audit/tlog/merkle.js';
import { noteSigner, openNote, parseVerifierKey, signCheckpoint } from '../../src/audit/tlog/note.js';
import { gitText } from '../../src/git/run.js';
import { decisionEvent, openTrail } from '../helpers/audit-repo.js';
// What the commands find is tested here, not the process: they run in this process.
import { gitgateInProcess as gitgate } from '../helpers/cli.js';
import { buildGoTlog, goTlog } from '../helpers/go-tlog.js';

// Go's golang.org/x/mod/sumdb/note and .../tlog, an implementation gitgate shares no code with,
// check gitgate's checkpoint signature, inclusion proof and consistency proof.
describe('interop with Go sumdb/note and sumdb/tlog', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-go-tlog-'));
  let bin = '';
  const signer = noteSigner('gitgate.test/audit', generateKeyPairSync('ed25519').privateKey);
  const records = Array.from(
    { length: 300 },
    (_, i) => `{"v":2,"stream":"sessions/s${i % 7}","seq":${Math.floor(i / 7)},"leaf":${i},"type":"decision"}`,
  );
  let hf: HashFile;
  let read: SubtreeReader;
  let oldNote = '';

  beforeAll(async () => {
    bin = await buildGoTlog();
    hf = HashFile.open(path.join(dir, 'hashes'));
    hf.append(records.slice(0, 123).map((r) => leafHash(r)));
    oldNote = signCheckpoint({ origin: signer.name, size: hf.size, root: hf.root(), extensions: [] }, signer);
    hf.append(records.slice(123).map((r) => leafHash(r)));
    read = (l, i) => hf.read(l, i);
  }, 600_000);
  afterAll(() => {
    hf?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const check = async (over: Record<string, unknown> = {}) => {
    const index = 77;
    const note = signCheckpoint({ origin: signer.name, size: hf.size, root: hf.root(), extensions: [] }, signer);
    const old = openNote(oldNote, [signer.verifier]).text.split('\n');
    const c = {
      vkey: signer.verifier.text,
      note,
      leaf: Buffer.from(records[index]!).toString('base64'),
      leafHash: leafHash(records[index]!).toString('base64'),
      index,
      inclusion: inclusionProof(read, index, hf.size).map((h) => h.toString('base64')),
      oldSize: Number(old[1]),
      oldRoot: old[2],
      consistency: consistencyProof(read, Number(old[1]), hf.size).map((h) => h.toString('base64')),
      ...over,
    };
    const file = path.join(dir, `case-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(c));
    return goTlog(bin, ['verify', file]);
  };

  it("accepts gitgate's checkpoint, inclusion proof and consistency proof", async () => {
    expect(await check()).toEqual({ code: 0, out: 'ok\n' });
  });

  it('refuses what gitgate would refuse: another key, a wrong leaf, a broken proof', async () => {
    const other = noteSigner('gitgate.test/audit', generateKeyPairSync('ed25519').privateKey);
    expect((await check({ vkey: other.verifier.text })).out).toMatch(/checkpoint signature/);
    expect((await check({ leaf: Buffer.from(records[78]!).toString('base64'), leafHash: '' })).out).toMatch(
      /inclusion proof/,
    );
    const bad = consistencyProof(read, 123, hf.size).map((h) => h.toString('base64'));
    bad[0] = Buffer.alloc(32).toString('base64');
    expect((await check({ consistency: bad })).out).toMatch(/consistency proof/);
  });

  it("reads Go's verifier keys and signed notes", async () => {
    const r = await goTlog(bin, [
      'sign',
      'example.com/log',
      'example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n',
    ]);
    expect(r.code).toBe(0);
    const { vkey, note } = JSON.parse(r.out) as { vkey: string; note: string };
    expect(openNote(note, [parseVerifierKey(vkey)]).verifiedBy).toEqual(['example.com/log']);
  });

  it('checks what a real gateway log wrote, through the CLI: checkpoint, `audit prove` and `audit consistency`', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-go-real-'));
    const t = await openTrail(root);
    for (let i = 0; i < 9; i++) await t.log.append(`sessions/s${i % 2}`, decisionEvent(`x${i}`));
    await t.committer.commit();
    for (let i = 9; i < 40; i++) await t.log.append(`sessions/s${i % 3}`, decisionEvent(`x${i}`));
    await t.committer.commit();
    await t.log.close();
    const repo = path.join(root, 'audit');
    const key = await gitgate(['audit', 'public-key', '--data-dir', root]);
    expect(key.code, key.stderr).toBe(0);
    const vkey = key.stdout.trim();
    expect(vkey).toBe(t.key.verifier.text);
    const cp = await gitgate(['audit', 'checkpoint', repo]);
    expect(cp.stdout).toMatch(/^gitgate\.audit\/\S+\n40\n/);
    const oldFile = path.join(root, 'old.checkpoint');
    writeFileSync(oldFile, await gitText(repo, ['show', 'HEAD~1:checkpoint']));
    const prove = await gitgate(['audit', 'prove', 'x17', '--repo', repo, '--key', vkey]);
    expect(prove.code, prove.stderr).toBe(0);
    const bundle = JSON.parse(prove.stdout.trim()) as {
      record: string;
      leaf: number;
      inclusion: string[];
      checkpoint: string;
    };
    expect(bundle.leaf).toBe(17);
    const bundleFile = path.join(root, 'x17.proof');
    writeFileSync(bundleFile, prove.stdout);
    const checked = await gitgate(['audit', 'verify-proof', bundleFile, '--key', vkey]);
    expect(checked.stdout).toMatch(
      /^ok: leaf 17 \(decision of exchange x17\) is in the log gitgate\.audit\/\S+ of 40 record\(s\)/,
    );
    const other = noteSigner('gitgate.test/audit', generateKeyPairSync('ed25519').privateKey).verifier.text;
    expect((await gitgate(['audit', 'verify-proof', bundleFile, '--key', other])).code).toBe(1);
    const cons = await gitgate(['audit', 'consistency', oldFile, repo, '--key', vkey]);
    expect(cons.code, cons.stdout).toBe(0);
    const c = JSON.parse(cons.stdout) as { oldSize: number; oldRoot: string; size: number; proof: string[] };
    expect([c.oldSize, c.size]).toEqual([9, 40]);
    const file = path.join(root, 'case.json');
    writeFileSync(
      file,
      JSON.stringify({
        vkey,
        note: bundle.checkpoint,
        leaf: Buffer.from(bundle.record).toString('base64'),
        index: bundle.leaf,
        inclusion: bundle.inclusion,
        oldSize: c.oldSize,
        oldRoot: c.oldRoot,
        consistency: c.proof,
      }),
    );
    expect(await goTlog(bin, ['verify', file])).toEqual({ code: 0, out: 'ok\n' });
  }, 120_000); // seven CLI processes: a bound for a loaded machine, not a duration under test
});
