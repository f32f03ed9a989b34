import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { Credentials } from '../../src/credentials/credentials.js';
import { KeyRing } from '../../src/credentials/keyring.js';
import { packageRoot } from '../../src/paths.js';

/** The documented definition, written out independently: keys sorted by UTF-16 code units at every depth, no whitespace. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Credentials over a fresh key ring, for one upstream `demo`. */
async function credentials() {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-data-'));
  const config = validateConfig(
    { dataDir, policy: { dir: dataDir }, upstreams: { demo: { url: 'http://127.0.0.1:1/mcp' } } },
    {},
    dataDir,
    'test',
  );
  return { config, creds: new Credentials(config, await KeyRing.load(dataDir, { graceMs: 0, activationMs: 0 })) };
}

describe('credential args_sha256', () => {
  it('is base64url (no padding) of SHA-256 over the UTF-8 canonical JSON of the call arguments, as documented', async () => {
    const { config, creds } = await credentials();
    const args = { z: [1, 2.5, { b: true, a: null }], a: 'ünïcødé ✓ "q"', m: { y: 1e21, x: -0.1 } };
    const auth = creds.forCall(config.upstreams.demo!, {
      subject: 'alice',
      method: 'tools/call',
      tool: 'echo',
      arguments: args,
    });
    const token = auth.headers.authorization!.replace(/^Bearer /, '');
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as {
      args_sha256: string;
    };
    const text = '{"a":"ünïcødé ✓ \\"q\\"","m":{"x":-0.1,"y":1e+21},"z":[1,2.5,{"a":null,"b":true}]}';
    expect(canonical(args)).toBe(text);
    expect(payload.args_sha256).toBe(createHash('sha256').update(Buffer.from(text, 'utf8')).digest('base64url'));
    expect(payload.args_sha256).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const doc = await readFile(path.join(packageRoot, 'docs', 'architecture.md'), 'utf8');
    expect(doc).toContain(
      '`args_sha256` = base64url (no padding) of SHA-256 over the UTF-8 bytes of the canonical JSON of `params.arguments`',
    );
  });
});

describe('credential scope', () => {
  it('holds one scope-token per scope: a tool name with a space (or anything outside RFC 6749 §3.3) cannot read as two scopes', async () => {
    const { config, creds } = await credentials();
    const scopeOf = (o: { tool?: string; scopes?: string[] }) => {
      const auth = creds.forCall(config.upstreams.demo!, { subject: 'alice', method: 'tools/call', ...o });
      const token = auth.headers.authorization!.replace(/^Bearer /, '');
      return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { scope: string }).scope;
    };
    expect(scopeOf({ tool: 'x tools/call:get-env' })).toBe('tools/call:x%20tools/call:get-env');
    expect(scopeOf({ scopes: ['tools/call:echo', 'tools/call:a"b\\c%d é'] })).toBe(
      'tools/call:echo tools/call:a%22b%5Cc%25d%20%C3%A9',
    );
    expect(scopeOf({ tool: 'echo' }).split(' ')).toEqual(['tools/call:echo']);
  });
});
