/**
 * Scanners for secrets (cloud keys, GitHub tokens, JWTs, bearer tokens, PEM
 * private keys). Like scan-pii.ts: each finds exactly what the regular
 * expression in its comment finds with `matchAll`, in time linear in the text.
 */
import {
  ALNUM,
  DASH,
  DIGIT,
  DOT,
  is,
  PLUS,
  runEnd,
  runOf,
  SLASH,
  type Span,
  spaceEnd,
  TILDE,
  UNDERSCORE,
  UPPER,
  WORD,
  wordBoundary,
} from './chars.js';

const AWS_PREFIXES = new Set(['AKIA', 'ASIA', 'ABIA', 'ACCA']);

/** `\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b` */
export function awsAccessKeySpans(t: string): Span[] {
  const out: Span[] = [];
  for (let i = t.indexOf('A'); i >= 0; i = t.indexOf('A', i + 1)) {
    if (
      !wordBoundary(t, i) ||
      !AWS_PREFIXES.has(t.slice(i, i + 4)) ||
      !runOf(t, i + 4, 16, UPPER | DIGIT) ||
      !wordBoundary(t, i + 20)
    )
      continue;
    out.push({ start: i, end: i + 20 });
    i += 19;
  }
  return out;
}

const B64 = ALNUM | SLASH | PLUS;

/** `(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])`: runs of exactly 40 such characters. */
export function base64Runs40(t: string, accept: (s: Span) => boolean): Span[] {
  const out: Span[] = [];
  for (let i = 0; i < t.length; i++) {
    if (!is(t.charCodeAt(i), B64)) continue;
    const end = runEnd(t, i, B64);
    if (end - i === 40 && accept({ start: i, end })) out.push({ start: i, end });
    i = end;
  }
  return out;
}

/** `\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b` */
export function githubTokenSpans(t: string): Span[] {
  const out: Span[] = [];
  for (let i = t.indexOf('g'); i >= 0; i = t.indexOf('g', i + 1)) {
    if (!wordBoundary(t, i)) continue;
    let end = -1;
    if (t[i + 1] === 'h' && 'pousr'.includes(t[i + 2] ?? '?') && t[i + 3] === '_') {
      const run = runEnd(t, i + 4, ALNUM, 256) - (i + 4);
      if (run >= 36 && run <= 255 && !is(t.charCodeAt(i + 4 + run), WORD)) end = i + 4 + run;
    } else if (t.startsWith('github_pat_', i)) {
      const run = runEnd(t, i + 11, WORD, 256) - (i + 11);
      if (run >= 22 && run <= 255) end = i + 11 + run;
    }
    if (end < 0) continue;
    out.push({ start: i, end });
    i = end - 1;
  }
  return out;
}

const B64URL = ALNUM | UNDERSCORE | DASH;

/**
 * `\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*`. A segment runs to
 * the end of its run of base64url characters, so every "eyJ" inside one run shares
 * the rest of the match: each run, and the two after it, is looked at once.
 */
export function jwtSpans(t: string): Span[] {
  const out: Span[] = [];
  let runStop = -1;
  let end = -1;
  for (let s = t.indexOf('eyJ'); s >= 0; s = t.indexOf('eyJ', s + 1)) {
    if (s > 0 && is(t.charCodeAt(s - 1), WORD)) continue;
    if (s >= runStop) {
      runStop = runEnd(t, s + 3, B64URL);
      end = t.charCodeAt(runStop) === 46 ? jwtTail(t, runStop + 1) : -1;
    }
    if (end < 0 || s + 8 > runStop) continue;
    out.push({ start: s, end });
    s = end - 1;
  }
  return out;
}

/** `eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*` at j: its end, or -1. */
function jwtTail(t: string, j: number): number {
  if (!t.startsWith('eyJ', j)) return -1;
  const stop = runEnd(t, j, B64URL);
  if (stop - (j + 3) < 5 || t.charCodeAt(stop) !== 46) return -1;
  return runEnd(t, stop + 1, B64URL);
}

const BEARER_CHARS = ALNUM | DASH | DOT | UNDERSCORE | TILDE | PLUS | SLASH;

/** The HTTP auth scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` are the same word. */
const BEARER_WORD = /bearer/gi;

/** `\b(?i:Bearer)\s+[A-Za-z0-9\-._~+/]{20,}=*` */
export function bearerSpans(t: string): Span[] {
  const out: Span[] = [];
  const at = (from: number): number => {
    BEARER_WORD.lastIndex = from;
    return BEARER_WORD.exec(t)?.index ?? -1;
  };
  for (let i = at(0); i >= 0; i = at(i + 1)) {
    if (!wordBoundary(t, i)) continue;
    const space = spaceEnd(t, i + 6);
    if (space === i + 6) continue;
    const token = runEnd(t, space, BEARER_CHARS);
    if (token - space < 20) continue;
    let end = token;
    while (t.charCodeAt(end) === 61) end++;
    out.push({ start: i, end });
    i = end - 1;
  }
  return out;
}

/**
 * `(?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----` at i: its end, or -1. The words are forced (each
 * runs to its space), and "PRIVATE KEY-----" (or "PRIVATE KEY BLOCK-----") can only follow last.
 */
function keyLabelEnd(t: string, i: number): number {
  let pos = i;
  let last = -1;
  let before = -1;
  for (;;) {
    const word = runEnd(t, pos, UPPER);
    if (word === pos || t.charCodeAt(word) !== 32) break;
    before = last;
    last = pos;
    pos = word + 1;
  }
  if (last >= 0 && t.startsWith('PRIVATE KEY-----', last)) return last + 16;
  // OpenPGP armor: `PGP PRIVATE KEY BLOCK-----`.
  if (before >= 0 && t.startsWith('PRIVATE KEY BLOCK-----', before)) return before + 22;
  return -1;
}

/** `-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----|$)` */
export function privateKeySpans(t: string): Span[] {
  const out: Span[] = [];
  // The first valid END at or after `searchedFrom` (-1: none), remembered so no text is searched twice.
  let searchedFrom = -1;
  let found = -1;
  const firstEnd = (from: number): number => {
    if (searchedFrom >= 0 && searchedFrom <= from && (found < 0 || found >= from)) return found;
    searchedFrom = from;
    found = -1;
    for (let e = t.indexOf('-----END ', from); e >= 0; e = t.indexOf('-----END ', e + 1)) {
      if (keyLabelEnd(t, e + 9) >= 0) {
        found = e;
        break;
      }
    }
    return found;
  };
  for (let b = t.indexOf('-----BEGIN '); b >= 0; b = t.indexOf('-----BEGIN ', b + 1)) {
    const header = keyLabelEnd(t, b + 11);
    if (header < 0) continue;
    const e = firstEnd(header);
    // A key cut short (no END): everything after its BEGIN is the key.
    if (e < 0) {
      out.push({ start: b, end: t.length });
      break;
    }
    const end = keyLabelEnd(t, e + 9);
    out.push({ start: b, end });
    b = end - 1;
  }
  return out;
}
