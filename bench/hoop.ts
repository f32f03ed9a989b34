/**
 * hoop's MCP proxy daemon (`mcpproxyd`), the peer the benchmark compares with: pinned, built with
 * `go install` into the git-ignored tools/ folder (the pattern of src/policy/opa-binary.ts for opa).
 *   npx tsx bench/hoop.ts        (installs it, prints its path)
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../src/paths.js';

const run = promisify(execFile);

/** The one mcpproxy release the benchmark compares with. */
export const HOOP_MODULE = 'github.com/hoophq/mcpproxy';
export const HOOP_VERSION = '0.1.1';

export const hoopToolDir: string = path.join(packageRoot, 'tools', 'mcpproxyd', `v${HOOP_VERSION}`);
const toolBinary = path.join(hoopToolDir, 'mcpproxyd');

/**
 * The module version a Go binary was built from (`go version -m`): `go install` builds report
 * "dev" for `mcpproxyd -version`, so the build info is what proves the pin.
 */
async function moduleVersionOf(bin: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('go', ['version', '-m', bin], { timeout: 20_000 });
    const m = /^\s*mod\s+(\S+)\s+v(\S+)/m.exec(stdout);
    return m?.[1] === HOOP_MODULE ? m[2] : undefined;
  } catch {
    return undefined;
  }
}

/** The pinned mcpproxyd: $GITGATE_BENCH_MCPPROXYD, or the tools folder, or built there now with `go install`. */
export async function ensureMcpproxyd(log: (line: string) => void = () => {}): Promise<string> {
  const envPath = process.env.GITGATE_BENCH_MCPPROXYD;
  for (const c of [envPath, toolBinary]) {
    if (c !== undefined && c !== '' && existsSync(c) && (await moduleVersionOf(c)) === HOOP_VERSION) return c;
  }
  const go = await run('go', ['version']).then(
    () => true,
    () => false,
  );
  if (!go) throw new Error(`mcpproxyd v${HOOP_VERSION} is needed: install Go >= 1.26 so the benchmark can build it`);
  await mkdir(hoopToolDir, { recursive: true });
  log(`installing mcpproxyd v${HOOP_VERSION} with go install into ${hoopToolDir} (one time, a few minutes)`);
  try {
    await run('go', ['install', `${HOOP_MODULE}/cmd/mcpproxyd@v${HOOP_VERSION}`], {
      env: { ...process.env, GOBIN: hoopToolDir, CGO_ENABLED: '0' },
      timeout: 20 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    throw new Error(`go install of mcpproxyd v${HOOP_VERSION} failed: ${(err as { stderr?: string }).stderr ?? err}`, {
      cause: err,
    });
  }
  if ((await moduleVersionOf(toolBinary)) !== HOOP_VERSION)
    throw new Error(`built ${toolBinary} but its build info does not name ${HOOP_MODULE} v${HOOP_VERSION}`);
  return toolBinary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  ensureMcpproxyd((l) => console.error(l)).then(
    (bin) => console.log(bin),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 1;
    },
  );
}
