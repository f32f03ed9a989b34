import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The build output that sits next to its sources (dotfiles are never sources). */
const BUNDLE = 'bundle.tar.gz';

function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else if (e.name !== BUNDLE) out.push(path.relative(base, p).split(path.sep).join('/'));
  }
  return out;
}

/**
 * The digest of a policy folder's sources: sha256 over "<sha256>  <path>" lines,
 * sorted by path. CI puts it in the bundle's .manifest revision, so a bundle
 * built from other sources than the commit it sits in is recognised as stale.
 */
export function sourcesDigest(dir: string): string {
  const lines = walk(dir)
    .sort()
    .map(
      (f) =>
        `${createHash('sha256')
          .update(readFileSync(path.join(dir, f)))
          .digest('hex')}  ${f}`,
    );
  return `sha256:${createHash('sha256')
    .update(`${lines.join('\n')}\n`)
    .digest('hex')}`;
}
