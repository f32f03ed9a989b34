import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DETECTORS, ibanValid, luhnValid, redactText } from '../../src/masking/detectors.js';
import { CREDENTIAL_DETECTORS, compileMask, maskMessage, withoutCredentials } from '../../src/masking/mask.js';
import { compilePath, MaskPathError } from '../../src/masking/path.js';
import { fitStructuredContent, placeholderFor } from '../../src/masking/structured.js';
import { packageRoot } from '../../src/paths.js';

const hits = (name: string, text: string) => DETECTORS[name]!(text).map((s) => text.slice(s.start, s.end));

describe('detectors: what they mask and the near misses they leave alone', () => {
  it.each([
    ['email', 'mail jane.doe+x@example.co.uk now', ['jane.doe+x@example.co.uk']],
    ['email', 'write to mailto:bob@example.com', ['bob@example.com']],
    ['email', 'see https://user@example.com/path and https://x.io/u/jane@corp.com', []],
    ['email', 'not an email: foo@bar, @handle, a@b.c', []],
    [
      'phone',
      'call +1 415-555-0132 or (415) 555-0199 or +447911123456',
      ['+1 415-555-0132', '(415) 555-0199', '+447911123456'],
    ],
    ['phone', 'order 12345678901234 and version 1.2.3', []],
    ['credit_card', 'visa 4111 1111 1111 1111, mc 5500-0000-0000-0004', ['4111 1111 1111 1111', '5500-0000-0000-0004']],
    ['credit_card', 'fails Luhn 4111 1111 1111 1112, too short 4111111', []],
    [
      'iban',
      'pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432',
      ['DE89 3704 0044 0532 0130 00', 'GB82WEST12345698765432'],
    ],
    ['iban', 'bad checksum DE89 3704 0044 0532 0130 01', []],
    ['aws_access_key', 'key AKIAIOSFODNN7EXAMPLE here', ['AKIAIOSFODNN7EXAMPLE']],
    ['aws_access_key', 'AKIAIOSFODNN7EXAMPL (too short), XAKIAIOSFODNN7EXAMPLE', []],
    [
      'aws_secret_key',
      'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      ['wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
    ],
    ['aws_secret_key', 'commit 0123456789abcdef0123456789abcdef01234567 is a sha', []],
    ['github_token', 'token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok', ['ghp_abcdefghijklmnopqrstuvwxyz0123456789']],
    ['github_token', 'ghp_short and gh_abcdefghijklmnopqrstuvwxyz0123456789', []],
    ['jwt', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl', ['eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl']],
    [
      'bearer_token',
      'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345',
      ['Bearer abcdefghijklmnopqrstuvwxyz012345'],
    ],
    ['bearer_token', 'a Bearer of bad news', []],
    // The auth scheme is case-insensitive.
    [
      'bearer_token',
      'authorization: bearer abcdefghijklmnopqrstuvwxyz012345, BEARER ABCDEFGHIJKLMNOPQRSTUVWXYZ012345',
      ['bearer abcdefghijklmnopqrstuvwxyz012345', 'BEARER ABCDEFGHIJKLMNOPQRSTUVWXYZ012345'],
    ],
    [
      'private_key',
      'x -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- y',
      ['-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----'],
    ],
    ['private_key', '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----', []],
    [
      'private_key',
      'pgp -----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK----- done',
      ['-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----'],
    ],
    // Cut short (a page of output, a truncated log): everything after BEGIN is the key.
    [
      'private_key',
      'head -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA',
      ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA'],
    ],
    ['private_key', '-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQIN\n-----END PGP PUBLIC KEY BLOCK-----', []],
    ['us_ssn', 'ssn 123-45-6789', ['123-45-6789']],
    ['us_ssn', 'not 000-12-3456, 666-12-3456, 123-00-4567, 2024-01-0001', []],
  ])('%s in %j → %j', (name, text, expected) => {
    expect(hits(name, text)).toEqual(expected);
  });

  it('checksums', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(ibanValid('GB82 WEST 1234 5698 7654 32')).toBe(true);
    expect(ibanValid('GB83WEST12345698765432')).toBe(false);
  });

  it('redacts overlapping findings once, longest first', () => {
    const r = redactText('x AKIAIOSFODNN7EXAMPLE and a@b.io', ['email', 'aws_access_key']);
    expect(r.text).toBe('x [redacted:aws_access_key] and [redacted:email]');
    expect(r.found).toEqual({ email: 1, aws_access_key: 1 });
  });
});

describe('mask paths', () => {
  it('parses the supported subset', () => {
    expect(compilePath('$.result.content[*].text')).toHaveLength(4);
    expect(compilePath("$['result']..text")).toEqual([
      { kind: 'member', name: 'result' },
      { kind: 'descend', name: 'text' },
    ]);
    expect(compilePath('$.params.messages[0].*')).toHaveLength(4);
  });

  it.each(['result', '$.', '$[', '$.a[?(@.x)]', '$..'])('rejects %j', (p) => {
    expect(() => compilePath(p)).toThrow(MaskPathError);
  });

  it('rejects unknown detectors and rules that do nothing', () => {
    expect(() => compileMask([{ path: '$.result', detectors: ['nope'] }])).toThrow(/unknown detector/);
    expect(() => compileMask([{ path: '$.result' }])).toThrow(/names no detector/);
  });
});

describe('the credentials every audit record is cleaned of', () => {
  it("are the default policy's credential detectors, exactly", () => {
    const rego = readFileSync(path.join(packageRoot, 'policies', 'gitgate', 'decision.rego'), 'utf8');
    const list = /^secret_detectors := (\[.*\])$/m.exec(rego)?.[1];
    expect(list).toBeDefined();
    expect([...CREDENTIAL_DETECTORS].sort()).toEqual((JSON.parse(list!) as string[]).sort());
  });
});

describe('maskMessage', () => {
  const result = () => ({
    jsonrpc: '2.0',
    id: 1,
    result: {
      content: [
        { type: 'text', text: 'contact ops@example.com, key AKIAIOSFODNN7EXAMPLE' },
        { type: 'image', data: 'AKIAIOSFODNN7EXAMPLE' },
      ],
      structuredContent: { owner: 'ops@example.com', count: 3, tags: ['a@b.io'] },
    },
  });

  it('masks every string under the selected node and keeps types', () => {
    const msg = result();
    const report = maskMessage(msg, compileMask([{ path: '$.result', detectors: ['email', 'aws_access_key'] }]));
    expect(msg.result.content[0]!.text).toBe('contact [redacted:email], key [redacted:aws_access_key]');
    expect(msg.result.structuredContent).toEqual({ owner: '[redacted:email]', count: 3, tags: ['[redacted:email]'] });
    expect(report.found).toEqual({ email: 3, aws_access_key: 2 });
  });

  it('a secret used as an object key is masked like one in a value (colliding names numbered)', () => {
    const msg = {
      result: {
        structuredContent: {
          tokens: {
            ghp_abcdefghijklmnopqrstuvwxyz0123456789: { scope: 'repo' },
            ghp_zyxwvutsrqponmlkjihgfedcba9876543210: { scope: 'admin' },
            AKIAIOSFODNN7EXAMPLE: 'prod',
          },
        },
      },
    };
    const report = maskMessage(msg, compileMask([{ path: '$.result', detectors: ['github_token', 'aws_access_key'] }]));
    expect(msg.result.structuredContent.tokens).toEqual({
      '[redacted:github_token]': { scope: 'repo' },
      '[redacted:github_token] (2)': { scope: 'admin' },
      '[redacted:aws_access_key]': 'prod',
    });
    expect(report.found).toEqual({ github_token: 2, aws_access_key: 1 });
  });

  it("a resource's text blob (base64, padded or not, wrapped or not) is masked as its text and stays base64; a binary blob stays as it was", () => {
    const file = 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE\nregion = eu-west-1\n';
    const b64 = Buffer.from(file).toString('base64');
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x41, 0x4b, 0x49, 0x41]).toString('base64');
    const msg = {
      result: {
        contents: [
          { uri: 'file:///creds', mimeType: 'text/plain', blob: b64 },
          { uri: 'file:///unpadded', blob: b64.replace(/=+$/, '') },
          { uri: 'file:///wrapped', blob: b64.replace(/(.{16})/g, '$1\r\n') },
          { uri: 'file:///image.png', mimeType: 'image/png', blob: png },
          { uri: 'file:///not-base64', blob: 'key: AKIAIOSFODNN7EXAMPLE' },
        ],
      },
    };
    const report = maskMessage(msg, compileMask([{ path: '$.result', detectors: ['aws_access_key'] }]));
    const masked = 'aws_access_key_id = [redacted:aws_access_key]\nregion = eu-west-1\n';
    for (const c of msg.result.contents.slice(0, 3)) expect(Buffer.from(c.blob, 'base64').toString()).toBe(masked);
    expect(msg.result.contents[3]!.blob).toBe(png);
    // Not base64: scanned as the string it is.
    expect(msg.result.contents[4]!.blob).toBe('key: [redacted:aws_access_key]');
    expect(report.found).toEqual({ aws_access_key: 4 });
    // The audit record's cleaning sees into text blobs too.
    const recorded = withoutCredentials({ contents: [{ blob: b64 }] });
    expect(Buffer.from(recorded.contents[0]!.blob, 'base64').toString()).toBe(
      'aws_access_key_id = [redacted:aws_access_key]\nregion = eu-west-1\n',
    );
  });

  it('a narrower path masks only what it selects', () => {
    const msg = result();
    maskMessage(msg, compileMask([{ path: '$.result.content[*].text', detectors: ['email'] }]));
    expect(msg.result.content[1]!.data).toBe('AKIAIOSFODNN7EXAMPLE');
    expect(msg.result.structuredContent.owner).toBe('ops@example.com');
    expect(msg.result.content[0]!.text).toContain('[redacted:email]');
  });

  it('redacts a whole field with a value of the same type', () => {
    const msg = result();
    maskMessage(msg, compileMask([{ path: '$.result.structuredContent.*', redact: true }]));
    expect(msg.result.structuredContent).toEqual({ owner: '[redacted]', count: 0, tags: [] });
  });

  it('paths that select nothing change nothing', () => {
    const msg = result();
    const before = JSON.stringify(msg);
    expect(maskMessage(msg, compileMask([{ path: '$.params..text', detectors: ['email'] }])).changed).toBe(0);
    expect(JSON.stringify(msg)).toBe(before);
  });
});

describe('structured content against the output schema', () => {
  const schema = {
    type: 'object',
    properties: { owner: { type: 'string', format: 'email' }, n: { type: 'integer', minimum: 1 } },
    required: ['owner', 'n'],
  };

  it('builds placeholders that validate', () => {
    expect(placeholderFor(schema)).toEqual({ owner: 'redacted@redacted.invalid', n: 1 });
    expect(placeholderFor({ enum: ['x', 'y'] })).toBe('x');
  });

  it('replaces structuredContent that masking broke, and says so', () => {
    const r: Record<string, unknown> = {
      content: [{ type: 'text', text: 't' }],
      structuredContent: { owner: '[redacted:email]', n: 4 },
    };
    expect(fitStructuredContent(r, schema)).toBe(true);
    expect(r.structuredContent).toEqual({ owner: 'redacted@redacted.invalid', n: 1 });
    expect((r.content as { text: string }[])[1]!.text).toMatch(/placeholder/);
  });

  it('patterns run on RE2, leading lookaheads included (as schema generators write e-mail patterns)', () => {
    const email = {
      type: 'string',
      format: 'email',
      pattern: '^(?!\\.)(?!.*\\.\\.)[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$',
    };
    const s = { type: 'object', properties: { owner: email }, required: ['owner'] };
    const masked: Record<string, unknown> = { content: [], structuredContent: { owner: '[redacted:email]' } };
    expect(fitStructuredContent(masked, s)).toBe(true);
    expect(masked.structuredContent).toEqual({ owner: 'redacted@redacted.invalid' });
    for (const [owner, valid] of [
      ['a.b@example.io', true],
      ['.a@example.io', false],
      ['a..b@example.io', false],
    ] as const) {
      expect(fitStructuredContent({ content: [], structuredContent: { owner } }, s), owner).toBe(!valid);
    }
  });

  it('two output schemas with the same $id (from two upstreams) are each enforced, in either dialect', () => {
    for (const $schema of ['https://json-schema.org/draft/2020-12/schema', 'http://json-schema.org/draft-07/schema#']) {
      const a = { $schema, $id: 'result', type: 'object', properties: { n: { type: 'number' } }, required: ['n'] };
      const b = { $schema, $id: 'result', type: 'object', properties: { s: { type: 'string' } }, required: ['s'] };
      expect(fitStructuredContent({ content: [], structuredContent: { n: 'x' } }, a), $schema).toBe(true);
      expect(fitStructuredContent({ content: [], structuredContent: { s: 1 } }, b), $schema).toBe(true);
      expect(fitStructuredContent({ content: [], structuredContent: { s: 'ok' } }, b), $schema).toBe(false);
    }
  });

  it('an upstream schema whose $id is a meta-schema id breaks nothing for the next one', () => {
    const hostile = { $id: 'https://json-schema.org/draft/2020-12/schema', type: 'object', required: ['x'] };
    expect(fitStructuredContent({ content: [], structuredContent: {} }, hostile)).toBe(true);
    expect(fitStructuredContent({ content: [], structuredContent: { owner: 'a@b.io', n: 'no' } }, schema)).toBe(true);
  });

  it('leaves valid structured content alone', () => {
    const r: Record<string, unknown> = { content: [], structuredContent: { owner: 'a@b.io', n: 2 } };
    expect(fitStructuredContent(r, schema)).toBe(false);
    expect(r.structuredContent).toEqual({ owner: 'a@b.io', n: 2 });
  });
});
