import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';

const run = promisify(execFile);

const source = path.join(packageRoot, 'test/fixtures/go-tlog');
const binary = path.join(packageRoot, 'tools/go-tlog/go-tlog');

/**
 * Build test/fixtures/go-tlog (Go's golang.org/x/mod/sumdb/note and .../tlog, pinned in its
 * go.mod/go.sum) into the git-ignored tools/ folder with `go build`; rebuilt when a source
 * file is newer than the binary.
 */
export async function buildGoTlog(): Promise<string> {
  const newest = Math.max(...['main.go', 'go.mod', 'go.sum'].map((f) => statSync(path.join(source, f)).mtimeMs));
  if (existsSync(binary) && statSync(binary).mtimeMs >= newest) return binary;
  await run('go', ['build', '-o', binary, '.'], {
    cwd: source,
    env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' },
    timeout: 10 * 60_000,
  });
  return binary;
}

/** Run the Go checker; resolves with its exit code and output. */
export async function goTlog(bin: string, args: readonly string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(bin, [...args], { timeout: 60_000 });
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
