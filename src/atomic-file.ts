import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * The one atomic file write. A crash at any moment leaves either the old
 * content or the whole new content, never a torn file, and once it returns
 * the new content survives a power cut: write a temp file beside it, fsync it,
 * rename it over the file (or, with `exclusive`, link it into place, which
 * fails with EEXIST when another process got there first), then fsync the
 * directory so the rename itself is durable.
 */
export interface AtomicWriteOptions {
  readonly mode?: number;
  readonly exclusive?: boolean;
}

const tempOf = (file: string) => `${file}.${randomBytes(4).toString('hex')}.tmp`;

export async function writeFileAtomic(file: string, data: string, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = tempOf(file);
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
  const dir = await open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** writeFileAtomic for callers that must be durable before they return synchronously (stores behind sync interfaces). */
export function writeFileAtomicSync(file: string, data: string, opts: AtomicWriteOptions = {}): void {
  const tmp = tempOf(file);
  const fd = openSync(tmp, 'wx', opts.mode ?? 0o644);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    if (opts.exclusive === true) linkSync(tmp, file);
    else renameSync(tmp, file);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // renamed away: nothing to drop
    }
  }
  fsyncDirSync(path.dirname(file));
}

/** Append `data` and fsync it (and the directory, when the append created the file) before returning. */
export function appendFileDurableSync(file: string, data: string, opts: { mode?: number } = {}): void {
  let created = false;
  let fd: number;
  try {
    fd = openSync(file, 'wx', opts.mode ?? 0o644);
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    fd = openSync(file, 'a');
  }
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDirSync(path.dirname(file));
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
