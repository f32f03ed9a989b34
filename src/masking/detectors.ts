/**
 * Named detectors for secrets and personal data inside strings. Each finds
 * spans to replace; checksum-bearing formats (cards, IBANs) are validated so
 * look-alike numbers are left alone. Pure functions, no I/O.
 */

export interface Span {
  readonly start: number;
  readonly end: number;
}

export type Detector = (text: string) => Span[];

function matches(re: RegExp, text: string, accept: (m: RegExpExecArray) => boolean = () => true): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`))) {
    if (accept(m as RegExpExecArray)) out.push({ start: m.index, end: m.index + m[0].length });
  }
  return out;
}

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

/** Spans of URLs with a scheme and authority (`https://…`): an `x@y` inside one is not an email. */
function urlSpans(text: string): Span[] {
  return matches(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/i, text);
}

const inside = (s: Span, outer: readonly Span[]) => outer.some((o) => s.start >= o.start && s.end <= o.end);

export const DETECTORS: Readonly<Record<string, Detector>> = {
  // Rule: emails are masked anywhere (mailto: included) except inside a scheme://… URL,
  // where `user@host` is the URL's userinfo, not an address.
  email: (t) => {
    const urls = urlSpans(t);
    return matches(/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/, t).filter((s) => !inside(s, urls));
  },
  phone: (t) =>
    matches(/(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w-])|(?<![\w+])\+[1-9]\d{7,14}(?!\d)/, t),
  credit_card: (t) => matches(/(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/, t, (m) => luhnValid(m[0].replace(/[ -]/g, ''))),
  iban: (t) => matches(/\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/, t, (m) => ibanValid(m[0])),
  aws_access_key: (t) => matches(/\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b/, t),
  // A 40-character secret is only a secret in context: "aws" or "secret" shortly before it.
  aws_secret_key: (t) =>
    matches(/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/, t, (m) => {
      const s = m[0];
      const context = t.slice(Math.max(0, m.index - 40), m.index).toLowerCase();
      return /[A-Z]/.test(s) && /[a-z]/.test(s) && /\d/.test(s) && /(aws|secret)/.test(context);
    }),
  github_token: (t) => matches(/\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/, t),
  jwt: (t) => matches(/\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/, t),
  bearer_token: (t) => matches(/\bBearer\s+[A-Za-z0-9\-._~+/]{20,}=*/, t),
  private_key: (t) => matches(/-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----/, t),
  us_ssn: (t) => matches(/(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/, t),
};

export type DetectorName = keyof typeof DETECTORS;

export function isDetector(name: string): boolean {
  return Object.hasOwn(DETECTORS, name);
}

/** Replace every detected span with `[redacted:<detector>]`; returns the text and what was found. */
export function redactText(text: string, detectors: readonly string[]): { text: string; found: Record<string, number> } {
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
