import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { compactVerify, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { ed25519Signer, hashLine, parseLine, signRecord, verifyParsed, type AuditRecord } from '../../src/audit/record.js';
import { canonicalJson } from '../../src/canonical-json.js';
import { packageRoot } from '../../src/paths.js';

// A key that exists only for this test: it makes the signed bytes reproducible.
const jwk = JSON.parse(readFileSync(path.join(packageRoot, 'test/fixtures/audit-test-key.jwk'), 'utf8')) as { kid: string };
const signer = ed25519Signer(jwk.kid, createPrivateKey({ key: jwk as never, format: 'jwk' }));

const records: AuditRecord[] = [
  {
    v: 1,
    stream: 'sessions/2026-11-26/5f0c1d1e-0000-4000-8000-000000000001',
    seq: 0,
    ts: '2026-11-26T12:00:00.000Z',
    prev: null,
    type: 'decision',
    exchange: 'e-1',
    caller: { sub: 'alice', groups: ['eng'], issuer: 'urn:gitgate:dev-issuer' },
    upstream: 'demo',
    session: '5f0c1d1e-0000-4000-8000-000000000001',
    method: 'tools/call',
    tool: 'echo',
    data: { allow: true, reasons: ['tools/call of echo allowed for alice (groups: [eng])'], risk: 'low', note: 'ünïcødé ✓', n: 1.5 },
  },
];

describe('audit record format (golden files)', () => {
  const golden = path.join(packageRoot, 'test/golden/audit-records.jsonl');

  it('signs records into exactly the bytes of the golden file', () => {
    const lines: string[] = [];
    let prev: string | null = null;
    for (const [i, r] of [...records, { ...records[0]!, seq: 1, type: 'response' as const, data: { ok: true, bytes: 42 } }].entries()) {
      const line = signRecord(signer, { ...r, seq: i, prev });
      lines.push(line);
      prev = hashLine(line);
    }
    const text = `${lines.join('\n')}\n`;
    if (process.env.GITGATE_UPDATE_GOLDEN === '1') writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
  });

  it('golden lines are standard JWS: jose verifies them with the published key', async () => {
    const pub = await importJWK(signer.publicJwk() as never, 'EdDSA');
    for (const line of readFileSync(golden, 'utf8').trim().split('\n')) {
      const parsed = parseLine(line);
      const { payload, protectedHeader } = await compactVerify(parsed.compact, pub);
      expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: 'golden-test-key' });
      expect(new TextDecoder().decode(payload)).toBe(canonicalJson(parsed.record));
      expect(verifyParsed(parsed, createPublicKey(createPrivateKey({ key: jwk as never, format: 'jwk' })))).toBe(true);
    }
  });

  it('canonical JSON sorts keys, keeps unicode and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'é', null], c: undefined }, 'A': true })).toBe('{"A":true,"a":{"d":[1,"é",null]},"b":1}');
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/non-finite/);
  });

  it('rejects malformed lines with a reason', () => {
    expect(() => parseLine('nope')).toThrow('not valid JSON');
    expect(() => parseLine('{"jws":"a.b.c","record":{}}')).toThrow('detached');
    expect(() => parseLine(`{"jws":"${Buffer.from('{"alg":"HS256","kid":"k"}').toString('base64url')}..sig","record":{}}`)).toThrow('EdDSA');
  });
});
