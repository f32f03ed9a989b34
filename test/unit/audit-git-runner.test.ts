import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitRunner } from '../../src/git/helper-runner.js';

describe('the audit committer git runner (a helper process spawns git)', () => {
  it('runs git in the given folder with stdin, returns stdout, and names a failure', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-runner-'));
    execFileSync('git', ['init', '-q', dir]);
    const r = gitRunner();
    const blob = 'a line\n\u00e9\n';
    const id = (await r.run(dir, ['hash-object', '-w', '--stdin'], blob)).toString('utf8').trim();
    expect(id).toBe(execFileSync('git', ['hash-object', '--stdin'], { input: blob }).toString().trim());
    expect((await r.run(dir, ['cat-file', '-p', id])).toString('utf8')).toBe(blob);
    // Many at once, answered each to its own request.
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) => r.run(dir, ['hash-object', '--stdin'], `n${i}`)),
    );
    const want = (i: number) =>
      execFileSync('git', ['hash-object', '--stdin'], { input: `n${i}` })
        .toString()
        .trim();
    for (const [i, b] of many.entries()) expect(b.toString().trim()).toBe(want(i));
    await expect(r.run(dir, ['cat-file', '-p', '0'.repeat(40)])).rejects.toThrow(/git cat-file failed \(128\)/);
    // The committer identity is git()'s, not the environment's.
    expect((await r.run(dir, ['var', 'GIT_COMMITTER_IDENT'])).toString()).toMatch(/^gitgate <gitgate@localhost>/);
  });
});
