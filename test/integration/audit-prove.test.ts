import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseVerifierKey } from '../../src/audit/tlog/note.js';
import { verifyBundle } from '../../src/audit/tlog/proof.js';
import { auditProve, type ProofTree } from '../../src/cli/audit.js';
import { decisionEvent, openTrail } from '../helpers/audit-repo.js';

const RECORDS = 5_000;

describe('gitgate audit prove on a large-ish log', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'gitgate-prove-'));
  let verifierKey: string;
  beforeAll(async () => {
    const t = await openTrail(root);
    verifierKey = t.key.verifier.text;
    await t.committer.recover();
    const all: Promise<void>[] = [];
    for (let i = 0; i < RECORDS; i++) all.push(t.log.append(`s${i % 7}`, decisionEvent(`x${i}`)));
    await Promise.all(all);
    await t.committer.commit();
    await t.log.close();
  }, 120_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const prove = async (leaf: number, hashes?: string) => {
    const lines: string[] = [];
    let tree: ProofTree | undefined;
    await auditProve(
      String(leaf),
      { repo: path.join(root, 'audit'), key: [verifierKey], ...(hashes !== undefined ? { hashes } : {}) },
      (l) => lines.push(l),
      (t) => (tree = t),
    );
    return { lines, tree: tree! };
  };

  it('reads O(log n) stored hashes a proof, and the bundle checks with the verifier', async () => {
    const { lines, tree } = await prove(4_321, path.join(root, 'wal', 'tree.hashes'));
    expect(tree.source).toBe('stored');
    // A leaf and one hash per level of a 5000-leaf tree (13 levels), not the 5000 leaves.
    expect(tree.reads()).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(RECORDS)));
    expect(lines).toHaveLength(1);
    const proved = verifyBundle(lines[0]!, [parseVerifierKey(verifierKey)]);
    expect(proved).toMatchObject({ leaf: 4_321, checkpoint: { size: RECORDS } });
  });

  it('without the stored hashes (a clone of the repo alone), the same bundle from the records', async () => {
    const stored = await prove(17, path.join(root, 'wal', 'tree.hashes'));
    const fromRecords = await prove(17, path.join(root, 'no-such-file'));
    expect(fromRecords.tree.source).toBe('records');
    expect(fromRecords.lines).toEqual(stored.lines);
  });
});
