import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashFile } from '../../src/audit/tlog/hash-file.js';
import { consistencyProof, inclusionProof, leafHash, type SubtreeReader } from '../../src/audit/tlog/merkle.js';
import { noteSigner, openNote, parseVerifierKey, signCheckpoint } from '../../src/audit/tlog/note.js';
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
});
