import { createHash } from 'node:crypto';
import path from 'node:path';
import { readRepoFile, walkRepoFiles } from '../repo-file.js';

/** The build output that sits next to its sources (dotfiles are never sources). */
const BUNDLE = 'bundle.tar.gz';
/** The routes file at the root of the repo that holds the policy folder. */
export const ROUTES_FILE = 'gitgate.routes.yaml';
/** What a policy folder may hold: its sources are read whole, on the event loop, before any signature is checked. */
export const MAX_SOURCE_FILES = 10_000;
export const MAX_SOURCE_BYTES = 64 * 1024 * 1024;
/** A routes file is a few upstreams. */
export const MAX_ROUTES_BYTES = 1024 * 1024;

/**
 * The digest of a policy folder's sources, and of the repo's routes file when it has one:
 * sha256 over "<sha256>  <path>" lines, sorted by path, the routes file last as
 * "<sha256>  /gitgate.routes.yaml" (a leading slash no source path has). CI puts it in the
 * bundle's .manifest revision, so a bundle built from other sources, or beside other routes,
 * than the commit it sits in is recognised as stale: a signed bundle signs its routes too.
 * Only regular files count: a symlink anywhere in the folder is refused (never followed), and
 * so are more than MAX_SOURCE_FILES files or MAX_SOURCE_BYTES bytes.
 */
export function sourcesDigest(dir: string, routes?: Buffer): string {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const shown = path.basename(dir);
  const files = walkRepoFiles(
    dir,
    {
      maxFiles: MAX_SOURCE_FILES,
      maxBytes: MAX_SOURCE_BYTES,
      skip: (name, isDir) => name.startsWith('.') || (!isDir && name === BUNDLE),
    },
    shown,
  );
  const lines = files.map((f) => `${sha(readRepoFile(path.join(dir, f), MAX_SOURCE_BYTES, `${shown}/${f}`))}  ${f}`);
  if (routes !== undefined) lines.push(`${sha(routes)}  /${ROUTES_FILE}`);
  return `sha256:${createHash('sha256')
    .update(`${lines.join('\n')}\n`)
    .digest('hex')}`;
}
