/**
 * Named detectors for secrets and personal data inside strings. Each finds
 * spans to replace; checksum-bearing formats (cards, IBANs) are validated so
 * look-alike numbers are left alone. Pure functions, no I/O.
 */
import type { Span } from './chars.js';
import { cardSpans, emailSpans, ibanSpans, outside, phoneSpans, ssnSpans, urlSpans } from './scan-pii.js';
import {
  awsAccessKeySpans,
  base64Runs40,
  bearerSpans,
  githubTokenSpans,
  jwtSpans,
  privateKeySpans,
} from './scan-secrets.js';

export type Detector = (text: string) => Span[];

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length >= 13 && sum % 10 === 0;
}

export function ibanValid(raw: string): boolean {
  const iban = raw.replace(/\s+/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (const ch of rearranged) {
    const v = ch >= 'A' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const d of v) rem = (rem * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

const digitsOf = (t: string, start: number, end: number) => t.slice(start, end).replace(/[ -]/g, '');

// A 40-character secret is only a secret in context: "aws" or "secret" shortly before it.
function awsSecretInContext(t: string, s: Span): boolean {
  const v = t.slice(s.start, s.end);
  const context = t.slice(Math.max(0, s.start - 40), s.start).toLowerCase();
  return /[A-Z]/.test(v) && /[a-z]/.test(v) && /\d/.test(v) && /(aws|secret)/.test(context);
}

/**
 * Every detector is a hand-written scanner (scan-pii.ts, scan-secrets.ts) that runs
 * in time linear in the text, whatever the text: upstream bytes are untrusted, and a
 * backtracking expression on them is a denial of service.
 */
export const DETECTORS: Readonly<Record<string, Detector>> = {
  // Rule: emails are masked anywhere (mailto: included) except inside a scheme://… URL,
  // where `user@host` is the URL's userinfo, not an address.
  email: (t) => {
    const emails = emailSpans(t);
    return emails.length === 0 ? emails : outside(emails, urlSpans(t));
  },
  phone: phoneSpans,
  credit_card: (t) => cardSpans(t, (start, end) => luhnValid(digitsOf(t, start, end))),
  iban: (t) => ibanSpans(t, (start, end) => ibanValid(t.slice(start, end))),
  aws_access_key: awsAccessKeySpans,
  aws_secret_key: (t) => base64Runs40(t, (s) => awsSecretInContext(t, s)),
  github_token: githubTokenSpans,
  jwt: jwtSpans,
  bearer_token: bearerSpans,
  private_key: privateKeySpans,
  us_ssn: ssnSpans,
};

export function isDetector(name: string): boolean {
  return Object.hasOwn(DETECTORS, name);
}

/** Replace every detected span with `[redacted:<detector>]`; returns the text and what was found. */
export function redactText(
  text: string,
  detectors: readonly string[],
): { text: string; found: Record<string, number> } {
  const spans: (Span & { name: string })[] = [];
  for (const name of detectors) for (const s of DETECTORS[name]!(text)) spans.push({ ...s, name });
  if (spans.length === 0) return { text, found: {} };
  // Longest first at each start; drop spans overlapping an earlier one.
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  const found: Record<string, number> = {};
  let out = '';
  let pos = 0;
  for (const s of spans) {
    if (s.start < pos) continue;
    out += `${text.slice(pos, s.start)}[redacted:${s.name}]`;
    pos = s.end;
    found[s.name] = (found[s.name] ?? 0) + 1;
  }
  return { text: out + text.slice(pos), found };
}
