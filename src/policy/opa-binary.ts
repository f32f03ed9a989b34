import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { GatewayError } from '../errors.js';
import { packageRoot } from '../paths.js';

const run = promisify(execFile);

/** The one OPA release gitgate builds and tests policies with. */
export const OPA_VERSION = '1.22.3';

export const opaToolDir: string = path.join(packageRoot, 'tools', 'opa', `v${OPA_VERSION}`);
const toolBinary = path.join(opaToolDir, 'opa');

async function versionOf(bin: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(bin, ['version'], { timeout: 20_000 });
    return /^Version:\s*v?(\S+)/m.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/** An opa binary of the pinned version: $GITGATE_OPA, the tools folder, or PATH. */
export async function locateOpa(envPath?: string): Promise<string | undefined> {
  const candidates = [envPath, toolBinary, 'opa'].filter((c): c is string => c !== undefined && c !== '');
  for (const c of candidates) {
    if (c !== 'opa' && !existsSync(c)) continue;
    if ((await versionOf(c)) === OPA_VERSION) return c;
  }
  return undefined;
}

/**
 * Locate the pinned opa, or build it with `go install` into tools/ (git-ignored).
 * Without Go and without a matching opa, fail with what to install.
 */
export async function ensureOpa(log: (line: string) => void = () => {}, envPath?: string): Promise<string> {
  const found = await locateOpa(envPath);
  if (found !== undefined) return found;
  const go = await run('go', ['version']).then(
    () => true,
    () => false,
  );
  if (!go) {
    throw new GatewayError(
      'POLICY_BUILD_FAILED',
      `opa ${OPA_VERSION} is needed: put opa v${OPA_VERSION} on PATH (or set GITGATE_OPA), or install Go >= 1.24 so gitgate can build it`,
    );
  }
  await mkdir(opaToolDir, { recursive: true });
  log(`installing opa v${OPA_VERSION} with go install into ${opaToolDir} (one time, about two minutes)`);
  try {
    await run('go', ['install', `github.com/open-policy-agent/opa@v${OPA_VERSION}`], {
      env: { ...process.env, GOBIN: opaToolDir, CGO_ENABLED: '0' },
      timeout: 20 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    throw new GatewayError(
      'POLICY_BUILD_FAILED',
      `go install of opa v${OPA_VERSION} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`,
      {
        cause: err,
      },
    );
  }
  if ((await versionOf(toolBinary)) !== OPA_VERSION) {
    throw new GatewayError('POLICY_BUILD_FAILED', `built ${toolBinary} but it does not report version ${OPA_VERSION}`);
  }
  return toolBinary;
}
