/**
 * Scanners for personal data (e-mail, phone, card, IBAN, SSN) and for the URLs
 * an e-mail is not looked for in. Each finds, left to right and without
 * overlap, exactly what the regular expression in its comment finds with
 * `matchAll`, in time linear in the text: no position is examined more than a
 * constant number of times (test/unit/detector-scanners.test.ts compares them
 * with those expressions on random text).
 */
import {
  ALNUM,
  at,
  DASH,
  DIGIT,
  DOT,
  is,
  isJsSpace,
  LETTER,
  OPEN_PAREN,
  PERCENT,
  PLUS,
  runEnd,
  runOf,
  SPACE,
  type Span,
  scanStarts,
  UNDERSCORE,
  UPPER,
  URL_QUOTE,
  WORD,
  wordBoundary,
} from './chars.js';

const LOCAL = ALNUM | DOT | UNDERSCORE | PERCENT | PLUS | DASH;
const LABEL = ALNUM | DASH;
const SCHEME = ALNUM | PLUS | DOT | DASH;
const UPPER_ALNUM = UPPER | DIGIT;

/** `[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}` */
export function emailSpans(t: string): Span[] {
  const out: Span[] = [];
  let from = 0;
  for (let atSign = t.indexOf('@'); atSign >= 0; atSign = t.indexOf('@', atSign + 1)) {
    // The local part is the run of local characters before the @ (no earlier than the last match).
    let start = atSign;
    while (start > from && is(t.charCodeAt(start - 1), LOCAL)) start--;
    if (start === atSign) continue;
    const end = domainEnd(t, atSign + 1);
    if (end < 0) continue;
    out.push({ start, end });
    from = end;
    atSign = end - 1;
  }
  return out;
}

/**
 * After the @: a label, then `.label`s, the last of which starts with two or more
 * letters (the TLD, which may be a prefix of that label). Greedy: the latest such label.
 */
function domainEnd(t: string, i: number): number {
  let q = runEnd(t, i, LABEL);
  if (q === i) return -1;
  let end = -1;
  while (q < t.length && t.charCodeAt(q) === 46) {
    const label = q + 1;
    const letters = runEnd(t, label, LETTER);
    if (letters - label >= 2) end = letters;
    const next = runEnd(t, label, LABEL);
    if (next === label) break;
    q = next;
  }
  return end;
}

const isUrlStop = (c: number) => is(c, URL_QUOTE) || isJsSpace(c);

/** `\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+` (case-insensitive) */
export function urlSpans(t: string): Span[] {
  const out: Span[] = [];
  let from = 0;
  for (let sep = t.indexOf('://'); sep >= 0; sep = t.indexOf('://', sep + 1)) {
    let body = sep + 3;
    while (body < t.length && !isUrlStop(t.charCodeAt(body))) body++;
    if (body === sep + 3) continue;
    // The scheme is the run of scheme characters before "://"; the match starts at its leftmost \b letter.
    let runStart = sep;
    while (runStart > from && is(t.charCodeAt(runStart - 1), SCHEME)) runStart--;
    let start = -1;
    for (let i = runStart; i < sep; i++) {
      if (is(t.charCodeAt(i), LETTER) && !at(t, i - 1, WORD)) {
        start = i;
        break;
      }
    }
    if (start < 0) continue;
    out.push({ start, end: body });
    from = body;
    sep = body - 1;
  }
  return out;
}

/** Spans of `inner` (sorted, as detectors give them) not inside any of the disjoint sorted `outer` spans. */
export function outside(inner: readonly Span[], outer: readonly Span[]): Span[] {
  const out: Span[] = [];
  let o = 0;
  for (const s of inner) {
    while (o < outer.length && outer[o]!.end <= s.start) o++;
    const u = outer[o];
    if (u === undefined || !(s.start >= u.start && s.end <= u.end)) out.push(s);
  }
  return out;
}

const PHONE_SEP = SPACE | DOT | DASH;

/** `(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w-])` at j: its end, or -1. */
function phoneRest(t: string, j: number): number {
  let k: number;
  if (t.charCodeAt(j) === 40) {
    if (!runOf(t, j + 1, 3, DIGIT) || t.charCodeAt(j + 4) !== 41) return -1;
    k = j + 5;
  } else {
    if (!runOf(t, j, 3, DIGIT)) return -1;
    k = j + 3;
  }
  if (!at(t, k, PHONE_SEP) || !runOf(t, k + 1, 3, DIGIT) || !at(t, k + 4, PHONE_SEP) || !runOf(t, k + 5, 4, DIGIT))
    return -1;
  const end = k + 9;
  return at(t, end, WORD | DASH) ? -1 : end;
}

/**
 * `(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w-])`
 * `|(?<![\w+])\+[1-9]\d{7,14}(?!\d)`, trying the choices in the order a backtracking engine does.
 */
function phoneAt(t: string, i: number): number {
  const plus = t.charCodeAt(i) === 43 && at(t, i + 1, DIGIT) && t.charCodeAt(i + 1) !== 48;
  if (plus) {
    const digits = runEnd(t, i + 2, DIGIT, 2) - (i + 2);
    for (let k = digits; k >= 0; k--) {
      const j = i + 2 + k;
      if (at(t, j, PHONE_SEP)) {
        const e = phoneRest(t, j + 1);
        if (e >= 0) return e;
      }
      const e = phoneRest(t, j);
      if (e >= 0) return e;
    }
  }
  const e = phoneRest(t, i);
  if (e >= 0) return e;
  if (plus) {
    const run = runEnd(t, i + 2, DIGIT, 15) - (i + 2);
    if (run >= 7 && run <= 14) return i + 2 + run;
  }
  return -1;
}

export const phoneSpans = (t: string): Span[] => scanStarts(t, PLUS | OPEN_PAREN | DIGIT, WORD | PLUS, phoneAt);

const CARD_SEP = SPACE | DASH;
const CARD_ENDS = new Int32Array(18);

/** `(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])` */
function cardAt(t: string, i: number): number {
  // Each repetition is forced: a separator followed by a digit, or a digit.
  let reps = 0;
  let pos = i + 1;
  while (reps < 18) {
    if (at(t, pos, CARD_SEP) && at(t, pos + 1, DIGIT)) pos += 2;
    else if (at(t, pos, DIGIT)) pos += 1;
    else break;
    CARD_ENDS[reps++] = pos;
  }
  for (let r = reps; r >= 12; r--) if (!at(t, CARD_ENDS[r - 1]!, DIGIT | DASH)) return CARD_ENDS[r - 1]!;
  return -1;
}

export const cardSpans = (t: string, accept: (start: number, end: number) => boolean): Span[] =>
  scanStarts(t, DIGIT, DIGIT | DASH, cardAt, accept);

/** `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b` */
function ibanAt(t: string, i: number): number {
  if (!at(t, i + 1, UPPER) || !runOf(t, i + 2, 2, DIGIT)) return -1;
  const groups: number[] = [];
  let pos = i + 4;
  while (groups.length < 7) {
    if (t.charCodeAt(pos) === 32 && runOf(t, pos + 1, 4, UPPER_ALNUM)) pos += 5;
    else if (runOf(t, pos, 4, UPPER_ALNUM)) pos += 4;
    else break;
    groups.push(pos);
  }
  for (let r = groups.length; r >= 2; r--) {
    const g = groups[r - 1]!;
    if (t.charCodeAt(g) === 32) {
      const tail = runEnd(t, g + 1, UPPER_ALNUM, 4);
      for (let e = tail; e > g + 1; e--) if (wordBoundary(t, e)) return e;
    }
    const tail = runEnd(t, g, UPPER_ALNUM, 4);
    for (let e = tail; e > g; e--) if (wordBoundary(t, e)) return e;
    if (wordBoundary(t, g)) return g;
  }
  return -1;
}

export const ibanSpans = (t: string, accept: (start: number, end: number) => boolean): Span[] =>
  scanStarts(t, UPPER, WORD, ibanAt, accept);

const digits3 = (t: string, i: number) => t.slice(i, i + 3);

/** `(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])` */
function ssnAt(t: string, i: number): number {
  if (
    !runOf(t, i, 3, DIGIT) ||
    t.charCodeAt(i + 3) !== 45 ||
    !runOf(t, i + 4, 2, DIGIT) ||
    t.charCodeAt(i + 6) !== 45 ||
    !runOf(t, i + 7, 4, DIGIT)
  )
    return -1;
  const area = digits3(t, i);
  if (
    area === '000' ||
    area === '666' ||
    area.startsWith('9') ||
    t.slice(i + 4, i + 6) === '00' ||
    t.slice(i + 7, i + 11) === '0000'
  )
    return -1;
  return at(t, i + 11, DIGIT | DASH) ? -1 : i + 11;
}

export const ssnSpans = (t: string): Span[] => scanStarts(t, DIGIT, DIGIT | DASH, ssnAt);
