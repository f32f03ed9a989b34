import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { git } from '../../src/git/run.js';

it('a git run past its time (a remote that accepts and never answers) is stopped, and fails saying so', async () => {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  try {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-git-run-'));
    await expect(
      git(dir, ['ls-remote', `git://127.0.0.1:${port}/policies`], {}, undefined, { timeoutMs: 300 }),
    ).rejects.toThrow(/git ls-remote did not finish within 300 ms/);
  } finally {
    for (const s of held) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

it('a git run whose output passes its bound is stopped, and fails saying so', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-git-run-'));
  expect((await git(dir, ['--version'])).toString()).toMatch(/^git version/);
  await expect(git(dir, ['--version'], {}, undefined, { maxOutputBytes: 3 })).rejects.toThrow(
    /git --version wrote more than 3 bytes/,
  );
});
