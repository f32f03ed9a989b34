import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import { type AuditRecord, auditSigner, hashLine, parseLine, signRecord } from '../../src/audit/record.js';
import { GitAuditStore } from '../../src/audit/store.js';
import { noteSigner, signCheckpoint } from '../../src/audit/tlog/note.js';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import { gitText } from '../../src/git/run.js';
import { packageRoot } from '../../src/paths.js';
import { newAuditKey } from '../helpers/audit-repo.js';
import { gitgate } from '../helpers/cli.js';

// A repo as the signed-record format wrote it: JWS lines, checkpoints.jsonl, keys/.
async function oldRepo(): Promise<string> {
  const repo = mkdtempSync(path.join(tmpdir(), 'gitgate-old-audit-'));
  const jwk = JSON.parse(readFileSync(path.join(packageRoot, 'test/fixtures/audit-test-key.jwk'), 'utf8')) as {
    kid: string;
  };
  const signer = auditSigner(jwk.kid, createPrivateKey({ key: jwk as never, format: 'jwk' }));
  const lines = readFileSync(path.join(packageRoot, 'test/golden/audit-records.jsonl'), 'utf8').trim().split('\n');
  const stream = parseLine(lines[0]!).record.stream;
  mkdirSync(path.dirname(path.join(repo, 'streams', `${stream}.jsonl`)), { recursive: true });
  writeFileSync(path.join(repo, 'streams', `${stream}.jsonl`), `${lines.join('\n')}\n`);
  const checkpoint: AuditRecord = {
    v: 1,
    stream: 'checkpoints',
    seq: 0,
    ts: '2026-11-26T12:00:01.000Z',
    prev: null,
    type: 'checkpoint',
    data: { heads: { [stream]: { seq: lines.length - 1, hash: hashLine(lines.at(-1)!) } } },
  };
  writeFileSync(path.join(repo, 'checkpoints.jsonl'), `${signRecord(signer, checkpoint)}\n`);
  mkdirSync(path.join(repo, 'keys'));
  writeFileSync(
    path.join(repo, 'keys', `${jwk.kid}.jwk`),
    JSON.stringify({
      ...createPublicKey(createPrivateKey({ key: jwk as never, format: 'jwk' })).export({ format: 'jwk' }),
      kid: jwk.kid,
    }),
  );
  await gitText(repo, ['init', '-q', '-b', 'main']);
  await gitText(repo, ['add', '-A']);
  await gitText(repo, ['commit', '-q', '-m', 'old format']);
  return repo;
}

describe('repos of the old, signed-record format', () => {
  it('still verify (read-only, saying what that cannot show), and a tampered one does not', async () => {
    const repo = await oldRepo();
    const r = await verifyAuditRepo(repo, { keys: [] });
    expect(r).toMatchObject({ ok: true, format: 1, streams: 1, records: 2 });
    expect(r.warnings[0]).toMatch(/old-format repo .* verified read-only against the keys it holds itself/);
    const file = (await gitText(repo, ['ls-files', 'streams'])).trim();
    writeFileSync(path.join(repo, file), readFileSync(path.join(repo, file), 'utf8').replace('ünïcødé', 'unicode'));
    const bad = await verifyAuditRepo(repo, { keys: [] });
    expect(bad.ok).toBe(false);
    expect(bad.error?.why).toMatch(/signature does not verify/);
  });

  it('given a key or a saved checkpoint, are refused: the old format proves nothing against them, so a log rewritten into it cannot pass', async () => {
    // What an attacker with write access makes of a transparency log: records of their own, signed by a key
    // of their own in keys/, checkpoints.jsonl, no `checkpoint` file. Read on its own terms, it verifies.
    const forged = await oldRepo();
    expect((await verifyAuditRepo(forged, { keys: [] })).ok).toBe(true);
    const pinned = newAuditKey('audit.example/log');
    const saved = signCheckpoint(
      { origin: pinned.origin, size: 2, root: Buffer.alloc(32), extensions: [] },
      noteSigner(pinned.origin, pinned.key),
    );
    const byKey = await verifyAuditRepo(forged, { keys: [pinned.verifier] });
    expect(byKey).toMatchObject({ ok: false, format: 1, records: 0 });
    expect(byKey.error).toEqual({
      where: '--key',
      why: expect.stringMatching(
        /old format .*: gitgate\.test\/audit\.example\/log signs nothing in it, so it proves nothing/,
      ),
    });
    for (const allowOldFormat of [false, true]) {
      const byCheckpoint = await verifyAuditRepo(forged, {
        keys: [pinned.verifier],
        checkpoint: saved,
        allowOldFormat,
      });
      expect(byCheckpoint.error?.where).toBe('--checkpoint');
      expect(byCheckpoint.error?.why).toMatch(/the log it was taken from is not this repo/);
    }
    // Asked for in so many words, it is checked against its own keys, and says what that is worth.
    const allowed = await verifyAuditRepo(forged, { keys: [pinned.verifier], allowOldFormat: true });
    expect(allowed).toMatchObject({ ok: true, format: 1, records: 2 });
    expect(allowed.warnings[0]).toMatch(/against the keys it holds itself/);
    // The CLI: exit 1 naming --key, and --allow-old-format.
    const cli = await gitgate(['audit', 'verify', forged, '--key', pinned.verifier.text]);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/FAILED at --key: this repo is in the old format/);
    const cliAllowed = await gitgate(['audit', 'verify', forged, '--key', pinned.verifier.text, '--allow-old-format']);
    expect(cliAllowed.code, cliAllowed.stdout).toBe(0);
  });

  it('are read by export/replay, and the gateway never appends to one', async () => {
    const repo = await oldRepo();
    const seen: string[] = [];
    for await (const r of readRecords(repo)) seen.push(`${r.seq} ${r.type}`);
    expect(seen).toEqual(['0 decision', '1 response']);
    await expect(GitAuditStore.open(repo, newAuditKey('new').verifier.text)).rejects.toThrow(
      /old, signed-record format: it stays verifiable .* new records go to a new audit.repo/,
    );
  });
});
