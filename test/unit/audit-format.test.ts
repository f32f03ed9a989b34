import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { compactVerify, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  type AuditRecord,
  auditSigner,
  hashLine,
  leafHashHex,
  leafHead,
  parseLine,
  recordParts,
  recordText,
  signRecord,
  verifyParsed,
} from '../../src/audit/record.js';
import { Frontier } from '../../src/audit/tlog/merkle.js';
import { noteSigner, signCheckpoint } from '../../src/audit/tlog/note.js';
import { canonicalJson } from '../../src/canonical-json.js';
import { compileSchema } from '../../src/config/schema.js';
import { generateSigningKey } from '../../src/credentials/algorithms.js';
import { packageRoot } from '../../src/paths.js';

// A key that exists only for this test: it makes the signed bytes reproducible.
const jwk = JSON.parse(readFileSync(path.join(packageRoot, 'test/fixtures/audit-test-key.jwk'), 'utf8')) as {
  kid: string;
};
const signer = auditSigner(jwk.kid, createPrivateKey({ key: jwk as never, format: 'jwk' }));

const input = {
  identity: { sub: 'alice', groups: ['eng'], issuer: 'urn:gitgate:dev-issuer' },
  mcp: {
    method: 'tools/call',
    tool: 'echo',
    arguments: { message: 'ünïcødé ✓', n: 1.5 },
    protocol_version: '2025-11-25',
    era: 'legacy',
  },
  upstream: { name: 'demo', transport: 'http' },
  request: { id: 1, time_ns: 1795694400000000000 },
};
const common = {
  v: 1,
  stream: 'sessions/2026-11-26/5f0c1d1e-0000-4000-8000-000000000001',
  ts: '2026-11-26T12:00:00.000Z',
  exchange: 'e-1',
  caller: { sub: 'alice', groups: ['eng'], issuer: 'urn:gitgate:dev-issuer' },
  upstream: 'demo',
  session: '5f0c1d1e-0000-4000-8000-000000000001',
  method: 'tools/call',
  tool: 'echo',
} as const;
const records: Omit<AuditRecord, 'seq' | 'prev'>[] = [
  {
    ...common,
    type: 'decision',
    data: {
      policy: { revision: '0123456789abcdef0123456789abcdef01234567', bundle_digest: 'sha256:00' },
      allow: true,
      valid: true,
      reasons: ['tools/call of echo allowed for alice (groups: [eng])'],
      risk: 'low',
      approval_required: false,
      mask: [],
      credential_ttl_seconds: 60,
      input_sha256: createHash('sha256').update(canonicalJson(input)).digest('hex'),
      input,
    },
  },
  {
    ...common,
    type: 'response',
    data: {
      ok: true,
      result: { content: [{ type: 'text', text: 'echo: ünïcødé ✓' }] },
      bytes: 42,
      relayed: 0,
      ms: 1.25,
    },
  },
];

describe('audit record format v1, old and read-only (golden files)', () => {
  const validRecord = compileSchema('audit-record');
  const golden = path.join(packageRoot, 'test/golden/audit-records.jsonl');

  it('signs records into exactly the bytes of the golden file', () => {
    const lines: string[] = [];
    let prev: string | null = null;
    for (const [i, r] of records.entries()) {
      const line = signRecord(signer, { ...r, seq: i, prev } as AuditRecord);
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
      // The payload is the record exactly as stored in the line.
      expect(
        `{"jws":"${parsed.compact.split('.')[0]}..${parsed.compact.split('.')[2]}","record":${new TextDecoder().decode(payload)}}`,
      ).toBe(line);
      expect(validRecord(parsed.record), JSON.stringify(validRecord.errors)).toBe(true);
      expect(verifyParsed(parsed, createPublicKey(createPrivateKey({ key: jwk as never, format: 'jwk' })))).toBe(true);
    }
  });

  it('ES256 (the default for new audit keys): the same record bytes, a signature jose verifies, and no algorithm confusion', async () => {
    const es = auditSigner('es-key', generateSigningKey('ES256'));
    const goldenLine = readFileSync(golden, 'utf8').split('\n')[0]!;
    const golden0 = parseLine(goldenLine);
    const line = signRecord(es, golden0.record);
    const parsed = parseLine(line);
    const recordPart = (l: string) => l.slice(l.indexOf(',"record":'));
    expect(recordPart(line)).toBe(recordPart(goldenLine));
    const { protectedHeader } = await compactVerify(parsed.compact, await importJWK(es.publicJwk() as never, 'ES256'));
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: 'es-key' });
    const esPub = createPublicKey({ key: es.publicJwk() as never, format: 'jwk' });
    expect(verifyParsed(parsed, esPub)).toBe(true);
    // An EdDSA-labelled line never verifies with a P-256 key, nor the reverse.
    expect(verifyParsed({ ...parsed, alg: 'EdDSA' }, esPub)).toBe(false);
    expect(
      verifyParsed(
        { ...golden0, alg: 'ES256' },
        createPublicKey(createPrivateKey({ key: jwk as never, format: 'jwk' })),
      ),
    ).toBe(false);
  });

  it('canonical JSON sorts keys, keeps unicode and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'é', null], c: undefined }, A: true })).toBe(
      '{"A":true,"a":{"d":[1,"é",null]},"b":1}',
    );
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/non-finite/);
  });

  it('rejects malformed lines with a reason', () => {
    expect(() => parseLine('nope')).toThrow('not valid JSON');
    expect(() => parseLine('{"jws":"a.b.c","record":{}}')).toThrow('detached');
    expect(() => parseLine('{"record":{},"jws":"a..c"}')).toThrow('stored layout');
    expect(() =>
      parseLine(`{"jws":"${Buffer.from('{"alg":"EdDSA","kid":"k"}').toString('base64url')}..sig","record":{"a":}}`),
    ).toThrow('not valid JSON');
    expect(() =>
      parseLine(`{"jws":"${Buffer.from('{"alg":"HS256","kid":"k"}').toString('base64url')}..sig","record":{}}`),
    ).toThrow('EdDSA or ES256');
  });
});

describe('audit record format v2: transparency-log leaves (golden files)', () => {
  const validRecord = compileSchema('audit-record');
  const logKey = createPrivateKey({
    key: JSON.parse(readFileSync(path.join(packageRoot, 'test/fixtures/audit-log-key.jwk'), 'utf8')) as never,
    format: 'jwk',
  });
  const signer = noteSigner('gitgate.test/audit', logKey);

  it('writes records, leaf hashes and the checkpoint into exactly the bytes of the golden files', () => {
    const lines: string[] = [];
    let prev: string | null = null;
    const tree = new Frontier();
    for (const [i, r] of records.entries()) {
      const { stream, ts, ...event } = r;
      const line = recordText(recordParts(stream, i, ts, event), prev, i);
      lines.push(line);
      prev = leafHashHex(line);
      tree.append(Buffer.from(prev, 'hex'));
      expect(validRecord(JSON.parse(line)), JSON.stringify(validRecord.errors)).toBe(true);
      expect(leafHead(line)).toMatchObject({ stream, seq: i, leaf: i });
    }
    const recordsText = `${lines.join('\n')}\n`;
    const treeText = [
      ...lines.map((l, i) => `leaf ${i}: ${leafHashHex(l)}`),
      '',
      signCheckpoint({ origin: 'gitgate.test/audit', size: lines.length, root: tree.root(), extensions: [] }, signer),
    ].join('\n');
    const goldenRecords = path.join(packageRoot, 'test/golden/audit-records-v2.jsonl');
    const goldenTree = path.join(packageRoot, 'test/golden/audit-tree-v2.txt');
    if (process.env.GITGATE_UPDATE_GOLDEN === '1') {
      writeFileSync(goldenRecords, recordsText);
      writeFileSync(goldenTree, treeText);
    }
    expect(recordsText).toBe(readFileSync(goldenRecords, 'utf8'));
    expect(treeText).toBe(readFileSync(goldenTree, 'utf8'));
    // No signature in a record: what is signed is the checkpoint over the tree.
    for (const l of lines) expect(l).not.toContain('jws');
  });
});
