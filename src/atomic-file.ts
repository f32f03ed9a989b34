import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';

/**
 * Write a file so that a crash at any moment leaves either the old content or
 * the whole new content, never a torn file: write a temp file beside it,
 * fsync, then rename over it (or, with `exclusive`, link it into place, which
 * fails with EEXIST when another process got there first).
 */
export async function writeFileAtomic(
  file: string,
  data: string,
  opts: { mode?: number; exclusive?: boolean } = {},
): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    if (opts.exclusive === true) await link(tmp, file);
    else await rename(tmp, file);
  } finally {
    // After a link the temp name is a second name to drop; after a rename (or a failure) it is gone or garbage.
    await unlink(tmp).catch(() => {});
  }
}
