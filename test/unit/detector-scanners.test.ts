import { describe, expect, it } from 'vitest';
import { DETECTORS, ibanValid, luhnValid } from '../../src/masking/detectors.js';
import { testSeed } from '../helpers/soak.js';

/**
 * The scanners against the regular expressions they replaced (the detectors as
 * they were, run here on short strings only, where backtracking is harmless):
 * the same spans on random text built from the pieces each pattern cares about.
 */
function matches(re: RegExp, text: string, accept: (m: RegExpExecArray) => boolean = () => true): [number, number][] {
  const out: [number, number][] = [];
  for (const m of text.matchAll(new RegExp(re.source, `${re.flags}g`)))
    if (accept(m as RegExpExecArray)) out.push([m.index, m.index + m[0].length]);
  return out;
}
const urls = (t: string) => matches(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/i, t);
const ORACLES: Record<string, (t: string) => [number, number][]> = {
  email: (t) => {
    const u = urls(t);
    return matches(/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/, t).filter(
      ([s, e]) => !u.some(([a, b]) => s >= a && e <= b),
    );
  },
  phone: (t) =>
    matches(
      /(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w-])|(?<![\w+])\+[1-9]\d{7,14}(?!\d)/,
      t,
    ),
  credit_card: (t) =>
    matches(/(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/, t, (m) => luhnValid(m[0].replace(/[ -]/g, ''))),
  iban: (t) => matches(/\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/, t, (m) => ibanValid(m[0])),
  aws_access_key: (t) => matches(/\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b/, t),
  aws_secret_key: (t) =>
    matches(/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/, t, (m) => {
      const s = m[0];
      const context = t.slice(Math.max(0, m.index - 40), m.index).toLowerCase();
      return /[A-Z]/.test(s) && /[a-z]/.test(s) && /\d/.test(s) && /(aws|secret)/.test(context);
    }),
  github_token: (t) => matches(/\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/, t),
  jwt: (t) => matches(/\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/, t),
  // The scheme in any case (RFC 9110); a key armored as PGP's BLOCK, or cut short: to the end.
  bearer_token: (t) => matches(/\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9\-._~+/]{20,}=*/, t),
  private_key: (t) =>
    matches(
      /-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----|$)/,
      t,
    ),
  us_ssn: (t) => matches(/(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/, t),
};

/** Pieces each pattern is made of, plus its near misses. */
const PIECES: Record<string, string[]> = {
  email: [
    'a',
    'Zq',
    '0',
    '.',
    '..',
    '-',
    '_',
    '%',
    '+',
    '@',
    '@x',
    '.com',
    '.c',
    '.io1',
    'x.y',
    ' ',
    'https://',
    'mailto:',
    '://',
    '"',
    '<',
    'é',
    '_a',
    'b+',
    '\u00a0',
  ],
  phone: [
    '+',
    '+1',
    '+44',
    '(',
    ')',
    '415',
    '555',
    '0132',
    '1',
    '12',
    '9',
    ' ',
    '.',
    '-',
    'a',
    '_',
    '+0',
    '(415)',
    '\n',
  ],
  credit_card: ['4111', '1111', '5500', '0000', '0004', '1', '2', ' ', '-', '--', 'a', '4', '42424242', '0'],
  iban: [
    'DE89 3704 0044 0532 0130 00',
    'GB82WEST12345698765432',
    'GB82 WEST 1234 5698 7654 32',
    'DE',
    'GB',
    '89',
    '82',
    '3704',
    '0044',
    '0532',
    '0130',
    '00',
    'WEST',
    '1234',
    '5698',
    '7654',
    '32',
    ' ',
    'A',
    '1',
    '_',
    '-',
    'de',
    'X9',
  ],
  aws_access_key: [
    'AKIA',
    'ASIA',
    'ABIA',
    'ACCA',
    'IOSFODNN7EXAMPLE',
    'A',
    'K',
    '7',
    ' ',
    '_',
    '-',
    'a',
    'AKIAIOSF',
    'ODNN7EXA',
  ],
  aws_secret_key: [
    'aws',
    'secret',
    ' = ',
    'wJalrXUtnFEMI/K7MDENG',
    '/bPxRfiCYEXAMPLEKEY',
    'K7MDENG/bPxRfiCY',
    'a',
    'B',
    '1',
    '/',
    '+',
    ' ',
    '-',
    'AWS',
    'xxxxxxxxxx',
  ],
  github_token: [
    'ghp_',
    'gho_',
    'ghx_',
    'github_pat_',
    'gh',
    'abcdefghij',
    'KLMNOPQRST',
    '0123456789',
    '_',
    '-',
    ' ',
    'a',
    'x'.repeat(36),
    'y'.repeat(22),
  ],
  jwt: [
    'eyJ',
    'eyJhbGciOiJ',
    'IUzI1NiJ9',
    '.',
    '-',
    '_',
    'a',
    'abcde',
    ' ',
    'x',
    'eyJzdWIiOiJ4In0',
    'c2lnbmF0dXJl',
    '..',
  ],
  bearer_token: [
    'Bearer',
    'Bearer ',
    'bearer ',
    ' ',
    '\t',
    '\u2003',
    'abcdefghij',
    'KLMNOPQRST',
    '0123456789',
    '-._~+/',
    '=',
    '==',
    'a',
    '_',
    'xBearer',
    'BEARER ',
    'bEaReR',
  ],
  private_key: [
    '-----BEGIN RSA PRIVATE KEY-----',
    '-----END PRIVATE KEY-----',
    '-----BEGIN ',
    '-----END ',
    'RSA ',
    'EC ',
    'PRIVATE ',
    'KEY-----',
    'PRIVATE KEY-----',
    'PUBLIC KEY-----',
    '\n',
    'MIIB',
    '-----',
    ' ',
    'A ',
    'rsa ',
    'PGP ',
    'BLOCK-----',
    'KEY BLOCK-----',
    '-----BEGIN PGP PRIVATE KEY BLOCK-----',
  ],
  us_ssn: [
    '123-45-6789',
    '123-45-',
    '-45-6789',
    '078-05-1120',
    '123',
    '45',
    '6789',
    '000',
    '666',
    '900',
    '00',
    '0000',
    '-',
    '1',
    '2',
    ' ',
    'a',
    '--',
  ],
};

/** mulberry32: small, seeded. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

const SEED = testSeed('detector scanners');
const CASES = 3000;

describe(`detector scanners find what the regular expressions found (seed ${SEED}; GITGATE_TEST_SEED=n to vary)`, () => {
  it.each(Object.keys(ORACLES))('%s', (name) => {
    console.info(`detector ${name}: seed ${SEED}`);
    const rnd = prng(SEED ^ (name.length * 7919));
    const pieces = PIECES[name]!;
    let found = 0;
    for (let n = 0; n < CASES; n++) {
      let text = '';
      const len = 1 + Math.floor(rnd() * 40);
      for (let k = 0; k < len; k++) text += pieces[Math.floor(rnd() * pieces.length)];
      const got = DETECTORS[name]!(text).map((s) => [s.start, s.end]);
      if (got.length > 0) found++;
      if (JSON.stringify(got) !== JSON.stringify(ORACLES[name]!(text)))
        expect({ seed: SEED, case: n, text, got }).toEqual({ seed: SEED, case: n, text, got: ORACLES[name]!(text) });
    }
    // The pieces make matches often enough for the comparison to mean something.
    console.info(`detector ${name}: ${found} of ${CASES} texts had findings`);
    expect(found).toBeGreaterThan(CASES / 100);
  });
});
