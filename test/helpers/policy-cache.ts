import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import type { BuiltBundle, buildPolicyBundle } from '../../src/policy/build.js';

type Build = typeof buildPolicyBundle;

/** Every file under `dir` (relative path and bytes, sorted): what opa build reads. */
async function treeHash(dir: string, h: ReturnType<typeof createHash>, rel = ''): Promise<void> {
  const entries = (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  for (const e of entries) {
    const p = path.join(rel, e.name);
    if (e.isDirectory()) await treeHash(dir, h, p);
    else if (e.isFile())
      h.update(`file\0${p}\0`)
        .update(await readFile(path.join(dir, p)))
        .update('\0');
    else h.update(`other\0${p}\0`);
  }
}

/** The bundle's key: the sources, every option, the opa binary (path, size, mtime) and the signing key's bytes. */
async function keyOf(opts: Parameters<Build>[0]): Promise<string> {
  const h = createHash('sha256');
  const bin = await stat(opts.opa);
  h.update(
    JSON.stringify({
      size: bin.size,
      mtime: bin.mtimeMs,
      ...opts,
      srcDir: undefined,
      outDir: undefined,
    }),
  );
  if (opts.signingKey !== undefined && existsSync(opts.signingKey)) h.update(await readFile(opts.signingKey));
  await treeHash(opts.srcDir, h);
  return h.digest('hex');
}

/** `build`, with its outputs kept in $GITGATE_TEST_BUNDLE_CACHE by key (without the variable: `build` itself). */
export function cachedBuild(build: Build): Build {
  return async (opts) => {
    const cache = process.env.GITGATE_TEST_BUNDLE_CACHE;
    if (cache === undefined || cache === '') return build(opts);
    // What opa would fail on (no binary, no folder) it fails on itself.
    const key = await keyOf(opts).catch(() => undefined);
    if (key === undefined) return build(opts);
    const kept = path.join(cache, key);
    const out = path.join(opts.outDir, 'bundle.tar.gz');
    if (!existsSync(path.join(kept, 'bundle.tar.gz'))) {
      const built: BuiltBundle = await build(opts);
      // Another worker may be keeping the same bundle: write aside, then rename into place.
      const aside = path.join(cache, `${key}.${randomUUID()}`);
      await mkdir(aside, { recursive: true });
      await copyFile(path.join(opts.outDir, 'capabilities.json'), path.join(aside, 'capabilities.json'));
      await copyFile(built.path, path.join(aside, 'bundle.tar.gz'));
      await rename(aside, kept).catch(() => undefined);
      return built;
    }
    await mkdir(opts.outDir, { recursive: true });
    await copyFile(path.join(kept, 'capabilities.json'), path.join(opts.outDir, 'capabilities.json'));
    await copyFile(path.join(kept, 'bundle.tar.gz'), out);
    return {
      path: out,
      digest: createHash('sha256')
        .update(await readFile(out))
        .digest('hex'),
    };
  };
}
