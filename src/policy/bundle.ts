import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { GatewayError } from '../errors.js';

export interface PolicyBundle {
  readonly wasm: Uint8Array;
  readonly data: Record<string, unknown>;
  readonly manifest: Record<string, unknown>;
  /** Every file in the bundle by its path without the leading slash. */
  readonly files: ReadonlyMap<string, Buffer>;
  /** sha256 of the bundle bytes, hex. */
  readonly digest: string;
}

const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

/**
 * Unpack an OPA bundle.tar.gz in memory (the WASM SDK cannot read bundles).
 * It must hold exactly one policy.wasm; data.json defaults to {}.
 */
export async function readBundle(bytes: Uint8Array): Promise<PolicyBundle> {
  let tarBytes: Buffer;
  try {
    tarBytes = gunzipSync(bytes, { maxOutputLength: MAX_BUNDLE_BYTES });
  } catch (err) {
    throw new GatewayError('POLICY_BUILD_FAILED', 'bundle is not a gzip archive', { cause: err });
  }
  const files = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => {
          if (entry.type === 'File') files.set(entry.path.replace(/^\/+/, ''), Buffer.concat(chunks));
        });
      },
    });
    parser.on('error', reject);
    parser.on('end', () => resolve());
    parser.end(tarBytes);
  }).catch((err: unknown) => {
    throw new GatewayError('POLICY_BUILD_FAILED', 'bundle is not a valid tar archive', { cause: err });
  });
  const wasm = [...files.entries()].filter(([name]) => name === 'policy.wasm' || name.endsWith('/policy.wasm'));
  if (wasm.length !== 1)
    throw new GatewayError('POLICY_BUILD_FAILED', `bundle must hold exactly one policy.wasm, found ${wasm.length}`);
  const parseJson = (name: string): Record<string, unknown> => {
    const raw = files.get(name);
    if (raw === undefined) return {};
    try {
      return JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new GatewayError('POLICY_BUILD_FAILED', `bundle file ${name} is not valid JSON`, { cause: err });
    }
  };
  return {
    wasm: new Uint8Array(wasm[0]![1]),
    data: parseJson('data.json'),
    manifest: parseJson('.manifest'),
    files,
    digest: createHash('sha256').update(bytes).digest('hex'),
  };
}
