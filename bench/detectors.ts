/**
 * Masking detectors on 1 MiB of typical text (words, with a finding every ~100 words):
 * the backtracking expressions they replaced, the same expressions on re2js, and the
 * scanners gitgate uses. `npx tsx bench/detectors.ts`. The re2js forms drop the
 * lookaheads RE2 lacks, so they only approximate the detectors.
 */
import { RE2JS } from 're2js';
import { DETECTORS } from '../src/masking/detectors.js';

const MiB = 1 << 20;
function rnd(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
const r = rnd(7);
const words = [
  'the',
  'quick',
  'brown',
  'fox',
  'jumps',
  'over',
  'lazy',
  'dog',
  'result',
  'value',
  'error',
  'ok',
  'data',
  '2024',
  'id',
  '42',
  '-',
  'user:',
];
const finds = [
  'jane.doe@example.com',
  '+1 415-555-0132',
  '4111 1111 1111 1111',
  'DE89 3704 0044 0532 0130 00',
  'AKIAIOSFODNN7EXAMPLE',
  'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'ghp_abcdefghijklmnopqrstuvwxyz0123456789',
  'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl',
  'Bearer abcdefghijklmnopqrstuvwxyz012345',
  '-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----',
  '123-45-6789',
  'https://example.com/x',
];
let typ = '';
while (typ.length < MiB)
  typ += ' ' + (r() < 0.01 ? finds[Math.floor(r() * finds.length)] : words[Math.floor(r() * words.length)]);
typ = Buffer.from(typ).toString();
const OLD: Record<string, RegExp> = {
  email: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g,
  phone:
    /(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w-])|(?<![\w+])\+[1-9]\d{7,14}(?!\d)/g,
  credit_card: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g,
  iban: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g,
  aws_access_key: /\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b/g,
  aws_secret_key: /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/g,
  github_token: /\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g,
  jwt: /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g,
  bearer_token: /\bBearer\s+[A-Za-z0-9\-._~+/]{20,}=*/g,
  private_key: /-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----/g,
  us_ssn: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g,
};
// RE2 (re2js) forms: lookbehinds with the LOOKBEHINDS flag; lookaheads dropped (RE2 has none), so these are approximations.
const RE2: Record<string, string> = {
  email: OLD.email!.source,
  phone: String.raw`(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}|(?<![\w+])\+[1-9]\d{7,14}`,
  credit_card: String.raw`(?<![\d-])\d(?:[ -]?\d){12,18}`,
  iban: OLD.iban!.source,
  aws_access_key: OLD.aws_access_key!.source,
  aws_secret_key: '(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}',
  github_token: OLD.github_token!.source,
  jwt: OLD.jwt!.source,
  bearer_token: OLD.bearer_token!.source,
  private_key: '-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?s:.)*?-----END (?:[A-Z]+ )*PRIVATE KEY-----',
  us_ssn: String.raw`(?<![\d-])\d{3}-\d{2}-\d{4}`,
};
const time = (f: () => unknown, reps = 5): number => {
  f();
  const s = performance.now();
  for (let i = 0; i < reps; i++) f();
  return (performance.now() - s) / reps;
};
// The adversarial shapes of test/security/detectors-adversarial.test.ts (the old expressions never finish on these).
const fill = (unit: string, prefix = '') =>
  Buffer.from(prefix + unit.repeat(Math.ceil((MiB - prefix.length) / unit.length))).toString();
const adversarial = [
  fill('a'),
  fill('a.', 'x@y.io '),
  fill('b.', 'a@'),
  fill('1'),
  fill('1 '),
  fill('+1'),
  fill(' AAAA', 'DE89'),
  fill('AKIA'),
  fill('A/', 'aws secret '),
  fill('a', 'ghp_'),
  fill('eyJ-'),
  fill(' ', 'Bearer'),
  fill('-----BEGIN PRIVATE KEY-----'),
  fill('123-45-'),
];
console.log(
  'detector'.padEnd(16),
  'old V8 regex',
  're2js',
  'scanner  (ms per MiB of typical text)',
  'scanner worst adversarial MiB',
);
for (const name of Object.keys(OLD)) {
  const re = OLD[name]!;
  const old = time(() => [...typ.matchAll(re)].length);
  const re2 = RE2JS.compile(RE2[name]!, RE2JS.LOOKBEHINDS);
  const r2 = time(() => [...re2.matchAll(typ)].length, 2);
  const sc = time(() => DETECTORS[name]!(typ).length);
  const worst = Math.max(...adversarial.map((t) => time(() => DETECTORS[name]!(t).length, 1)));
  console.log(
    name.padEnd(16),
    old.toFixed(2).padStart(12),
    r2.toFixed(2).padStart(6),
    sc.toFixed(2).padStart(8),
    worst.toFixed(2).padStart(44),
  );
}
