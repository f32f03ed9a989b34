import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { GatewayError } from '../errors.js';
import { hostBuiltins } from './host-builtins.js';

const run = promisify(execFile);

export const ENTRYPOINT = 'gitgate/decision';

interface Capabilities {
  builtins: { name: string; [k: string]: unknown }[];
  [k: string]: unknown;
}

/**
 * The capabilities a gitgate policy is compiled against: the builtins the OPA
 * WASM SDK implements, plus gitgate's host builtins, plus the language features
 * of the pinned opa (features are compiler-side, not runtime).
 */
export async function gitgateCapabilities(opa: string): Promise<Capabilities> {
  // The SDK ships capabilities.json beside its package.json but does not export it.
  const sdkRoot = path.resolve(
    path.dirname(createRequire(import.meta.url).resolve('@open-policy-agent/opa-wasm')),
    '..',
  );
  const sdk = JSON.parse(await readFile(path.join(sdkRoot, 'capabilities.json'), 'utf8')) as Capabilities;
  const { stdout } = await run(opa, ['capabilities', '--current'], { maxBuffer: 32 * 1024 * 1024 });
  const current = JSON.parse(stdout) as Capabilities;
  const builtins = [...sdk.builtins];
  for (const [name, b] of Object.entries(hostBuiltins)) {
    if (!builtins.some((x) => x.name === name))
      builtins.push({ name, decl: b.decl, ...(b.nondeterministic ? { nondeterministic: true } : {}) });
  }
  const { builtins: _ignored, ...rest } = current;
  return { ...rest, ...sdk, builtins };
}

export interface BuiltBundle {
  /** Absolute path of bundle.tar.gz. */
  readonly path: string;
  /** sha256 of the bundle bytes, hex. */
  readonly digest: string;
}

/**
 * `opa build -t wasm -e gitgate/decision --capabilities …` over a policy folder.
 * `_test.rego` files are left out of the bundle. A policy that needs a builtin
 * the runtime lacks fails here, with opa's message naming it.
 */
export async function buildPolicyBundle(opts: {
  opa: string;
  srcDir: string;
  outDir: string;
  revision?: string;
  /** PEM private key: sign the bundle (OPA's .signatures.json). */
  signingKey?: string;
  signingAlg?: string;
  /** With signingKey: the signing time (seconds) the signature carries as `iat`, what a gateway's rollback check compares. */
  signedAt?: number;
}): Promise<BuiltBundle> {
  await mkdir(opts.outDir, { recursive: true });
  const capsPath = path.join(opts.outDir, 'capabilities.json');
  await writeFile(capsPath, JSON.stringify(await gitgateCapabilities(opts.opa)));
  const out = path.join(opts.outDir, 'bundle.tar.gz');
  // Bundle mode (-b): the folder is the bundle (data.json files by path), and it can be signed.
  const args = [
    'build',
    '-b',
    '-t',
    'wasm',
    '-e',
    ENTRYPOINT,
    '--capabilities',
    capsPath,
    '--ignore',
    '*_test.rego',
    '--ignore',
    'bundle.tar.gz',
    '-o',
    out,
  ];
  if (opts.revision !== undefined) args.push('--revision', opts.revision);
  if (opts.signingKey !== undefined) {
    args.push('--signing-key', opts.signingKey, '--signing-alg', opts.signingAlg ?? 'RS256');
    if (opts.signedAt !== undefined) {
      const claims = path.join(opts.outDir, 'claims.json');
      await writeFile(claims, JSON.stringify({ iat: opts.signedAt }));
      args.push('--claims-file', claims);
    }
  }
  args.push(opts.srcDir);
  try {
    await run(opts.opa, args, { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    const detail = (e.stderr || e.stdout || String(err)).trim();
    throw new GatewayError('POLICY_BUILD_FAILED', `opa build of ${opts.srcDir} failed:\n${detail}`, { cause: err });
  }
  const bytes = await readFile(out);
  return { path: out, digest: createHash('sha256').update(bytes).digest('hex') };
}
