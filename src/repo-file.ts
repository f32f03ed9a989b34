import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import path from 'node:path';

/**
 * Files of a repo someone else writes (a policy repo's checkout, an audit repo): regular files
 * only, each read bounded. A symbolic link (to /dev/zero, to the gateway's keys, out of the
 * repo), a FIFO, a device or a socket is refused, never followed or opened for reading; so is
 * a file larger than the caller allows, before it is read. Thrown as `UntrustedFileError`, whose
 * message names the file relative to the repo.
 */
export class UntrustedFileError extends Error {
  constructor(
    readonly file: string,
    readonly why: string,
  ) {
    super(`${file}: ${why}`);
  }
}

function kindOf(st: { isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean; isDirectory(): boolean }) {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'a device';
}

const refusedKind = (shown: string, kind: string) =>
  new UntrustedFileError(shown, `is ${kind}: only regular files are read from this repo`);

/**
 * Read a regular file of at most `maxBytes`; `shown` names it in errors (default: the path).
 * Opened without following a final symlink and without blocking on a FIFO; the size is checked on
 * the opened file, and a file that grows while it is read is refused too.
 */
export function readRepoFile(file: string, maxBytes: number, shown = file): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw refusedKind(shown, 'a symbolic link');
    throw new UntrustedFileError(shown, `cannot be read (${code ?? (err as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw refusedKind(shown, kindOf(st));
    if (st.size > maxBytes)
      throw new UntrustedFileError(shown, `is ${st.size} bytes, more than the ${maxBytes} allowed`);
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n > st.size) throw new UntrustedFileError(shown, 'grew while it was read');
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Whether `p` exists as anything at all (a dangling symlink included), without following it. */
export function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** `p` must be a real directory (no symlink), else refused; false when it does not exist. */
export function isRepoDir(p: string, shown = p): boolean {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(p);
  } catch {
    return false;
  }
  if (!st.isDirectory()) throw refusedKind(shown, kindOf(st));
  return true;
}

export interface WalkLimits {
  /** At most this many files. */
  readonly maxFiles: number;
  /** At most this many bytes in all (sizes as lstat reports them). */
  readonly maxBytes: number;
  /** Entries (by name) not listed: a skipped file, or anything below a skipped directory, is still checked and counted. */
  readonly skip?: (name: string, isDir: boolean) => boolean;
}

/**
 * Every regular file under `dir` not skipped (paths relative to it, `/`-separated, sorted); a
 * symlink or any other non-regular entry anywhere below, skipped or not, is refused, as are more
 * files or bytes than allowed. `base` names `dir` in errors (default: its own path).
 */
export function walkRepoFiles(dir: string, limits: WalkLimits, base = dir): string[] {
  const out: string[] = [];
  let files = 0;
  let bytes = 0;
  // Below a skipped directory nothing is listed, but everything is checked and counted all the same:
  // a tool reading the folder after us (opa) may not skip what we skip.
  const walk = (d: string, skipping: boolean): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p).split(path.sep).join('/');
      const shown = path.join(base, rel).split(path.sep).join('/');
      const skipped = skipping || limits.skip?.(e.name, e.isDirectory()) === true;
      if (e.isDirectory()) {
        // git's own folder (a policy folder that is the repo's root) is git's, not the repo writer's files.
        if (e.name !== '.git') walk(p, skipped);
        continue;
      }
      const st = lstatSync(p);
      if (!st.isFile()) throw refusedKind(shown, kindOf(st));
      files++;
      bytes += st.size;
      if (files > limits.maxFiles)
        throw new UntrustedFileError(base, `holds more than ${limits.maxFiles} files, more than allowed`);
      if (bytes > limits.maxBytes)
        throw new UntrustedFileError(base, `holds more than ${limits.maxBytes} bytes, more than allowed`);
      if (!skipped) out.push(rel);
    }
  };
  walk(dir, false);
  return out.sort();
}
