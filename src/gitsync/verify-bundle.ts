import { createHash } from 'node:crypto';
import { compactVerify, importSPKI } from 'jose';
import YAML from 'yaml';
import { canonicalJson } from '../canonical-json.js';
import { GatewayError } from '../errors.js';

export interface BundleKey {
  /** PEM public key (SPKI). */
  readonly publicKey: string;
  readonly algorithm: string;
  /** The keyid the bundle must name (OPA default: "default"). */
  readonly keyId?: string;
}

interface SignedFiles {
  files?: { name?: string; hash?: string; algorithm?: string }[];
  keyid?: string;
  scope?: string;
  /** When it was signed (seconds): `gitgate policy build --sign-key` puts it in, with opa's --claims-file. */
  iat?: unknown;
}

/** What a verified signature says besides the files: when it was signed, if it says. */
export interface SignedBundle {
  readonly signedAt?: number;
}

/** OPA's rule: JSON and YAML files are hashed over their content with keys sorted; everything else as bytes. */
export function bundleFileHash(name: string, bytes: Buffer): string {
  let data: Buffer | string = bytes;
  if (name.endsWith('.json') || name === '.manifest') data = canonicalJson(JSON.parse(bytes.toString('utf8')));
  else if (name.endsWith('.yaml') || name.endsWith('.yml')) data = canonicalJson(YAML.parse(bytes.toString('utf8')));
  return createHash('sha256').update(data).digest('hex');
}

const fail = (why: string) => new GatewayError('POLICY_BUILD_FAILED', `bundle signature check failed: ${why}`);

/**
 * Verify an OPA-signed bundle: the JWT in .signatures.json verifies with the
 * configured key, and every file in the bundle is listed with its hash (no
 * unsigned extras, no missing ones). Returns when it was signed (its `iat`), if it says.
 */
export async function verifySignedBundle(files: ReadonlyMap<string, Buffer>, key: BundleKey): Promise<SignedBundle> {
  const raw = files.get('.signatures.json');
  if (raw === undefined) throw fail('the bundle is not signed (.signatures.json is missing)');
  let jwt: string | undefined;
  try {
    jwt = (JSON.parse(raw.toString('utf8')) as { signatures?: string[] }).signatures?.[0];
  } catch {
    throw fail('.signatures.json is not JSON');
  }
  if (typeof jwt !== 'string') throw fail('.signatures.json holds no signature');
  let payload: SignedFiles;
  try {
    const pub = await importSPKI(key.publicKey, key.algorithm);
    const { payload: bytes, protectedHeader } = await compactVerify(jwt, pub, { algorithms: [key.algorithm] });
    if (key.keyId !== undefined && protectedHeader.kid !== key.keyId)
      throw new Error(`signed with key ${protectedHeader.kid}, expected ${key.keyId}`);
    payload = JSON.parse(new TextDecoder().decode(bytes)) as SignedFiles;
  } catch (err) {
    throw fail(`signature does not verify with the configured key (${(err as Error).message})`);
  }
  const listed = new Map((payload.files ?? []).map((f) => [String(f.name).replace(/^\/+/, ''), f]));
  for (const [name, bytes] of files) {
    if (name === '.signatures.json') continue;
    const f = listed.get(name);
    if (f === undefined) throw fail(`${name} is in the bundle but not signed`);
    if ((f.algorithm ?? 'SHA-256').toUpperCase() !== 'SHA-256')
      throw fail(`${name}: unsupported hash algorithm ${f.algorithm}`);
    if (bundleFileHash(name, bytes) !== f.hash) throw fail(`${name} does not match its signed hash (tampered)`);
    listed.delete(name);
  }
  if (listed.size > 0) throw fail(`signed file(s) missing from the bundle: ${[...listed.keys()].join(', ')}`);
  if (payload.iat === undefined) return {};
  if (typeof payload.iat !== 'number' || !Number.isSafeInteger(payload.iat) || payload.iat < 0)
    throw fail('its iat (signing time) is not a whole number of seconds');
  return { signedAt: payload.iat };
}
