import { describe, expect, it } from 'vitest';
import { DETECTORS, redactText } from '../../src/masking/detectors.js';

const MiB = 1 << 20;
const fill = (unit: string, prefix = '', suffix = '') =>
  prefix + unit.repeat(Math.ceil((MiB - prefix.length - suffix.length) / unit.length)) + suffix;

/**
 * Upstream text is untrusted: about 1 MiB of what each pattern loves, in the
 * shapes that made the old regular expressions backtrack (a 64 KiB run of letters
 * took the e-mail detector 8.8 s; these would not have finished). Every detector
 * runs on every input: each must be linear in its input whatever the input is.
 */
const ADVERSARIAL: Record<string, string> = {
  letters: fill('a'),
  'dotted letters (url scheme, email domain)': fill('a.', 'x@y.io '),
  'at signs': fill('a@'),
  'one @ then labels': fill('b.', 'a@'),
  'local part then dashes': fill('a-', '', '@'),
  'url scheme runs': fill('a+', 'x@y.io '),
  'digits (card, phone, ssn)': fill('1'),
  'spaced digits': fill('1 '),
  'dashed digits': fill('1-'),
  'plus digits (phone)': fill('+1'),
  'ssn shapes': fill('123-45-'),
  'iban body': fill('A', 'DE89'),
  'iban groups': fill(' AAAA', 'DE89'),
  'aws prefixes': fill('AKIA'),
  'aws secret context': fill('A/', 'aws secret '),
  'github token body': fill('a', 'ghp_'),
  'github pat prefixes': fill('github_pat_'),
  'github prefixes after dashes': fill('-ghp_a'),
  'jwt headers without dots': fill('eyJ-'),
  'jwt first segment then dot': fill('-', 'eyJaaaaa.eyJ'),
  'bearer then spaces': fill(' ', 'Bearer'),
  bearers: fill('Bearer '),
  'bearer dashes': fill('-Bearer '),
  'pem begins without end': fill('-----BEGIN PRIVATE KEY-----'),
  'pem label words': fill('A ', '-----BEGIN '),
  'pem ends': fill('-----END PRIVATE KEY-----', '-----BEGIN PRIVATE KEY-----'),
};

describe('detectors on adversarial upstream text (about 1 MiB each)', () => {
  it.each(Object.keys(DETECTORS))('%s finishes on every adversarial input', (name) => {
    for (const [what, text] of Object.entries(ADVERSARIAL)) {
      const spans = DETECTORS[name]!(text);
      expect(Array.isArray(spans), what).toBe(true);
    }
  });

  it('redactText with every detector at once still masks what is there', () => {
    const text = `${fill('a.')} mail jane@example.com key AKIAIOSFODNN7EXAMPLE`;
    const r = redactText(text, Object.keys(DETECTORS));
    expect(r.found).toEqual({ email: 1, aws_access_key: 1 });
  });
});
