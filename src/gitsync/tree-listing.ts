import { GatewayError } from '../errors.js';
import { git } from '../git/run.js';
import { MAX_ROUTES_BYTES, MAX_SOURCE_BYTES, MAX_SOURCE_FILES, ROUTES_FILE } from './sources-digest.js';

/** A listing line is well under this; the listing of MAX_SOURCE_FILES files, a little more. */
const MAX_LISTING_BYTES = (MAX_SOURCE_FILES + 2) * 4200;

/**
 * What checking out `paths` of `commit` would write, from git's listing, before anything is written: at
 * most MAX_SOURCE_FILES files of MAX_SOURCE_BYTES (and the routes file within MAX_ROUTES_BYTES), no
 * symlink, no submodule. Throws POLICY_BUILD_FAILED naming what is wrong.
 */
export async function checkPolicyTree(
  clone: string,
  commit: string,
  paths: readonly string[],
  timeoutMs?: number,
): Promise<void> {
  const refuse = (why: string) => new GatewayError('POLICY_BUILD_FAILED', `commit ${commit.slice(0, 12)}: ${why}`);
  let listing: Buffer;
  try {
    listing = await git(clone, ['ls-tree', '-r', '-l', '-z', commit, '--', ...paths], {}, undefined, {
      maxOutputBytes: MAX_LISTING_BYTES,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  } catch (err) {
    throw refuse(`its policy files could not be listed: ${(err as Error).message}`);
  }
  let files = 0;
  let bytes = 0;
  for (const entry of listing.toString('utf8').split('\0')) {
    if (entry === '') continue;
    const tab = entry.indexOf('\t');
    const [mode, , , size] = entry.slice(0, tab).split(/ +/);
    const name = entry.slice(tab + 1);
    if (mode === '120000') throw refuse(`${name}: is a symbolic link (a policy repo's files are never links)`);
    if (mode === '160000') throw refuse(`${name}: is a submodule (a policy repo's files are its own)`);
    const n = Number(size);
    if (!Number.isSafeInteger(n)) throw refuse(`${name} has no size in git's listing`);
    if (name === ROUTES_FILE && n > MAX_ROUTES_BYTES)
      throw refuse(`${ROUTES_FILE}: is ${n} bytes, more than the ${MAX_ROUTES_BYTES} allowed`);
    files++;
    bytes += n;
    if (files > MAX_SOURCE_FILES + 1) throw refuse(`its policy folder holds more than ${MAX_SOURCE_FILES} files`);
    if (bytes > MAX_SOURCE_BYTES + MAX_ROUTES_BYTES)
      throw refuse(`its policy files hold more than ${MAX_SOURCE_BYTES} bytes`);
  }
}
