import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { x as untar } from 'tar';
import { git } from '../git/run.js';

/** The policy folder as it is at `ref`, written to a temporary folder (git archive; the work tree is untouched). */
export async function materialize(repo: string, ref: string, dir: string): Promise<string> {
  const out = mkdtempSync(path.join(tmpdir(), `gitgate-impact-${ref.replace(/[^\w.-]/g, '_').slice(0, 20)}-`));
  const tarball = await git(repo, ['archive', '--format=tar', ref, '--', dir]).catch((err: Error) => {
    throw new Error(`cannot read ${dir}/ at ${ref} in ${repo}: ${err.message}`);
  });
  await pipeline(Readable.from(tarball), untar({ cwd: out }));
  return path.join(out, dir);
}
